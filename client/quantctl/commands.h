// quantctl's sub-commands. Each takes the parsed arguments (after the command word), writes
// results to `out` and problems to `err`, and returns the process exit code (exit_codes.h).
#ifndef QUANTD_CLIENT_QUANTCTL_COMMANDS_H_
#define QUANTD_CLIENT_QUANTCTL_COMMANDS_H_

#include <ostream>
#include <string>
#include <vector>

namespace quantd::quantctl {

// Dispatches `argv` (without the program name): "submit", "get", "list", "cancel", "watch",
// "validate", "version", "help".
int RunQuantctl(const std::vector<std::string>& argv, std::ostream& out, std::ostream& err);

}  // namespace quantd::quantctl

#endif  // QUANTD_CLIENT_QUANTCTL_COMMANDS_H_
