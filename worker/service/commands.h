// quantd-worker's service sub-commands (the model tools live in worker/cli/):
//   connect   run as a daemon: connect to the scheduler and run assigned jobs
//   exec-job  the job process the daemon starts for one job (not for people)
//   run       run one job in this process without a scheduler (local mode)
// Each takes the arguments after the sub-command word and returns the exit code.
#ifndef QUANTD_WORKER_SERVICE_COMMANDS_H_
#define QUANTD_WORKER_SERVICE_COMMANDS_H_

#include <string>
#include <vector>

namespace quantd::service {

// `self` is the path of the quantd-worker executable (for starting job processes).
int RunConnectCommand(const std::string& self, const std::vector<std::string>& args);
int RunExecJobCommand(const std::vector<std::string>& args);
int RunLocalCommand(const std::vector<std::string>& args);

// The usage lines of the three commands, for quantd-worker's help.
const char* ServiceCommandsUsage();

}  // namespace quantd::service

#endif  // QUANTD_WORKER_SERVICE_COMMANDS_H_
