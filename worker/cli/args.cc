#include "worker/cli/args.h"

#include <algorithm>

#include "absl/status/status.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "proto/common/error_text.h"

namespace quantd::cli {

absl::StatusOr<Args> Args::Parse(const std::vector<std::string>& args,
                                 const std::set<std::string>& known) {
  Args parsed;
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& arg = args[i];
    if (arg.size() < 3 || arg.compare(0, 2, "--") != 0) {
      return absl::InvalidArgumentError(absl::StrCat("unexpected argument \"", arg, "\""));
    }
    std::string name = arg.substr(2);
    std::string value;
    const size_t eq = name.find('=');
    if (eq != std::string::npos) {
      value = name.substr(eq + 1);
      name = name.substr(0, eq);
    } else {
      if (i + 1 >= args.size()) {
        return absl::InvalidArgumentError(absl::StrCat("flag --", name, " needs a value"));
      }
      value = args[++i];
    }
    if (known.count(name) == 0) {
      return absl::InvalidArgumentError(absl::StrCat("unknown flag --", name));
    }
    if (!parsed.values_.emplace(name, value).second) {
      return absl::InvalidArgumentError(absl::StrCat("flag --", name, " given twice"));
    }
  }
  return parsed;
}

std::string Args::Get(const std::string& name, const std::string& fallback) const {
  auto it = values_.find(name);
  return it == values_.end() ? fallback : it->second;
}

absl::StatusOr<int64_t> Args::GetInt(const std::string& name, int64_t fallback,
                                     int64_t min_value) const {
  auto it = values_.find(name);
  if (it == values_.end()) return fallback;
  int64_t value = 0;
  if (!absl::SimpleAtoi(it->second, &value) || value < min_value) {
    return absl::InvalidArgumentError(absl::StrCat(
        "flag --", name, " must be an integer >= ", min_value, ", got \"", it->second, "\""));
  }
  return value;
}

absl::StatusOr<std::string> Args::Require(const std::string& name) const {
  auto it = values_.find(name);
  if (it == values_.end() || it->second.empty()) {
    return absl::InvalidArgumentError(absl::StrCat("flag --", name, " is required"));
  }
  return it->second;
}

int RunCommandBody(const char* name, const char* usage_line, CommandBody body,
                   const std::vector<std::string>& args, std::ostream& out, std::ostream& err) {
  if (std::find(args.begin(), args.end(), "--help") != args.end() ||
      std::find(args.begin(), args.end(), "-h") != args.end()) {
    out << "usage: quantd-worker " << name << " " << usage_line << "\n";
    return 0;
  }
  bool usage = false;
  const absl::Status status = body(args, out, &usage);
  if (status.ok()) return 0;
  err << "quantd-worker " << name << ": " << WithoutBacktrace(status.message()) << "\n";
  if (usage) err << "usage: quantd-worker " << name << " " << usage_line << "\n";
  return usage ? 2 : 1;
}

}  // namespace quantd::cli
