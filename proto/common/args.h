// A small command-line parser for sub-commands: "COMMAND [positional...] [--flag value|--flag=value
// |--switch]". Flags may appear anywhere after the command; repeated flags keep every value.
#ifndef QUANTD_PROTO_COMMON_ARGS_H_
#define QUANTD_PROTO_COMMON_ARGS_H_

#include <map>
#include <set>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace quantd {

class Args {
 public:
  // `switches` are flags that take no value (e.g. "watch"); every other flag takes one.
  // INVALID_ARGUMENT for a flag missing its value or not in `known`.
  static absl::StatusOr<Args> Parse(const std::vector<std::string>& argv,
                                    const std::set<std::string>& known,
                                    const std::set<std::string>& switches);

  const std::vector<std::string>& positional() const { return positional_; }
  bool Has(const std::string& flag) const { return flags_.count(flag) > 0; }
  // The last value of `flag`, or `fallback` when absent.
  std::string Get(const std::string& flag, const std::string& fallback = "") const;
  std::vector<std::string> GetAll(const std::string& flag) const;

 private:
  std::vector<std::string> positional_;
  std::map<std::string, std::vector<std::string>> flags_;
};

}  // namespace quantd

#endif  // QUANTD_PROTO_COMMON_ARGS_H_
