// Minimal sub-command flag parsing: "--name value" or "--name=value"; flags only (no
// positional arguments). Each sub-command declares the flags it accepts.
#ifndef QUANTD_WORKER_CLI_ARGS_H_
#define QUANTD_WORKER_CLI_ARGS_H_

#include <cstdint>
#include <map>
#include <ostream>
#include <set>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace quantd::cli {

class Args {
 public:
  // INVALID_ARGUMENT for an unknown flag, a flag without a value, a repeated flag or a
  // positional argument. `args` excludes the program and sub-command names.
  static absl::StatusOr<Args> Parse(const std::vector<std::string>& args,
                                    const std::set<std::string>& known);

  bool Has(const std::string& name) const { return values_.count(name) != 0; }
  std::string Get(const std::string& name, const std::string& fallback = "") const;
  // INVALID_ARGUMENT when present but not an integer >= min_value.
  absl::StatusOr<int64_t> GetInt(const std::string& name, int64_t fallback,
                                 int64_t min_value) const;
  // INVALID_ARGUMENT naming the flag when it is absent.
  absl::StatusOr<std::string> Require(const std::string& name) const;

 private:
  std::map<std::string, std::string> values_;
};

// A sub-command's body: results go to `out`; *usage is set when an error is the caller's
// (unknown, missing or bad flags).
using CommandBody = absl::Status (*)(const std::vector<std::string>& args, std::ostream& out,
                                     bool* usage);

// Runs `body` and returns the exit code: 0 success, 1 failure, 2 usage error. Errors go to
// `err` as "quantd-worker <name>: <message>", a usage error followed by `usage_line`. With
// --help (or -h) among `args` it only prints the usage line to `out` and returns 0.
int RunCommandBody(const char* name, const char* usage_line, CommandBody body,
                   const std::vector<std::string>& args, std::ostream& out, std::ostream& err);

}  // namespace quantd::cli

#endif  // QUANTD_WORKER_CLI_ARGS_H_
