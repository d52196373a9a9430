// Bearer-token authentication.
//
// Tokens file: one entry per line, "<token> <name> <role>", role one of "user", "admin",
// "worker"; blank lines and lines starting with '#' are ignored. User and admin tokens
// call QuantizeService (name = job owner); worker tokens call WorkerService only.
// Requests carry "authorization: Bearer <token>" metadata.
//
// Without a tokens file authentication is off: every user is the admin "local" and every
// worker is accepted (meant for loopback-only demo runs; quantd refuses it otherwise).
// Thread-safe (immutable after construction).
#ifndef QUANTD_SERVER_RPC_AUTH_H_
#define QUANTD_SERVER_RPC_AUTH_H_

#include <map>
#include <optional>
#include <string>

#include "absl/status/statusor.h"
#include "grpcpp/server_context.h"
#include "server/core/scheduler.h"

namespace quantd {

enum class Role { kUser, kAdmin, kWorker };

struct Principal {
  std::string name;
  Role role = Role::kUser;
};

class TokenTable {
 public:
  // INVALID_ARGUMENT naming the line for a malformed entry or a repeated token.
  static absl::StatusOr<TokenTable> Parse(const std::string& text);
  // NOT_FOUND when the file cannot be read.
  static absl::StatusOr<TokenTable> LoadFile(const std::string& path);

  const Principal* Find(const std::string& token) const;
  size_t size() const { return tokens_.size(); }

 private:
  std::map<std::string, Principal> tokens_;
};

class Authenticator {
 public:
  // nullopt: authentication off.
  explicit Authenticator(std::optional<TokenTable> tokens) : tokens_(std::move(tokens)) {}

  bool enabled() const { return tokens_.has_value(); }
  // UNAUTHENTICATED for a missing, malformed or unknown token; PERMISSION_DENIED for a
  // worker token (known, but not allowed to call QuantizeService).
  absl::StatusOr<Caller> AuthenticateUser(const grpc::ServerContextBase& context) const;
  // The worker token's name. UNAUTHENTICATED for a missing, malformed or unknown token;
  // PERMISSION_DENIED for a user or admin token.
  absl::StatusOr<std::string> AuthenticateWorker(const grpc::ServerContextBase& context) const;

 private:
  absl::StatusOr<const Principal*> Lookup(const grpc::ServerContextBase& context) const;

  std::optional<TokenTable> tokens_;
};

}  // namespace quantd

#endif  // QUANTD_SERVER_RPC_AUTH_H_
