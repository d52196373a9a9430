#include "server/rpc/auth.h"

#include <fstream>
#include <sstream>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"

namespace quantd {

absl::StatusOr<TokenTable> TokenTable::Parse(const std::string& text) {
  TokenTable table;
  int line_number = 0;
  for (absl::string_view line : absl::StrSplit(text, '\n')) {
    ++line_number;
    line = absl::StripAsciiWhitespace(line);
    if (line.empty() || line.front() == '#') continue;
    std::vector<std::string> fields =
        absl::StrSplit(line, absl::ByAnyChar(" \t"), absl::SkipEmpty());
    if (fields.size() != 3) {
      return absl::InvalidArgumentError(
          absl::StrCat("tokens file line ", line_number, ": expected \"<token> <name> <role>\""));
    }
    Principal principal;
    principal.name = fields[1];
    if (fields[2] == "user") {
      principal.role = Role::kUser;
    } else if (fields[2] == "admin") {
      principal.role = Role::kAdmin;
    } else if (fields[2] == "worker") {
      principal.role = Role::kWorker;
    } else {
      return absl::InvalidArgumentError(absl::StrCat("tokens file line ", line_number,
                                                     ": role must be user, admin or worker, got \"",
                                                     fields[2], "\""));
    }
    if (!table.tokens_.emplace(fields[0], principal).second) {
      return absl::InvalidArgumentError(
          absl::StrCat("tokens file line ", line_number, ": token repeated"));
    }
  }
  return table;
}

absl::StatusOr<TokenTable> TokenTable::LoadFile(const std::string& path) {
  std::ifstream in(path);
  if (!in) return absl::NotFoundError(absl::StrCat("cannot read tokens file ", path));
  std::stringstream text;
  text << in.rdbuf();
  return Parse(text.str());
}

const Principal* TokenTable::Find(const std::string& token) const {
  auto it = tokens_.find(token);
  return it == tokens_.end() ? nullptr : &it->second;
}

absl::StatusOr<const Principal*> Authenticator::Lookup(
    const grpc::ServerContextBase& context) const {
  const auto& metadata = context.client_metadata();
  auto it = metadata.find("authorization");
  if (it == metadata.end()) {
    return absl::UnauthenticatedError("missing \"authorization: Bearer <token>\" metadata");
  }
  absl::string_view value(it->second.data(), it->second.size());
  if (!absl::ConsumePrefix(&value, "Bearer ") && !absl::ConsumePrefix(&value, "bearer ")) {
    return absl::UnauthenticatedError("authorization metadata must be \"Bearer <token>\"");
  }
  const Principal* principal = tokens_->Find(std::string(absl::StripAsciiWhitespace(value)));
  if (principal == nullptr) return absl::UnauthenticatedError("unknown token");
  return principal;
}

absl::StatusOr<Caller> Authenticator::AuthenticateUser(
    const grpc::ServerContextBase& context) const {
  if (!tokens_.has_value()) return Caller{"local", true};
  absl::StatusOr<const Principal*> principal = Lookup(context);
  if (!principal.ok()) return principal.status();
  if ((*principal)->role == Role::kWorker) {
    return absl::PermissionDeniedError("a worker token cannot call QuantizeService");
  }
  return Caller{(*principal)->name, (*principal)->role == Role::kAdmin};
}

absl::StatusOr<std::string> Authenticator::AuthenticateWorker(
    const grpc::ServerContextBase& context) const {
  if (!tokens_.has_value()) return std::string("local");
  absl::StatusOr<const Principal*> principal = Lookup(context);
  if (!principal.ok()) return principal.status();
  if ((*principal)->role != Role::kWorker) {
    return absl::PermissionDeniedError("WorkerService needs a worker token");
  }
  return (*principal)->name;
}

}  // namespace quantd
