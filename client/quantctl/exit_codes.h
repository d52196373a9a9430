// quantctl's exit codes (documented in `quantctl help` and the README). Job outcomes are
// 0/1/2; the rest follow sysexits.h so scripts can tell usage, input and server problems
// apart.
#ifndef QUANTD_CLIENT_QUANTCTL_EXIT_CODES_H_
#define QUANTD_CLIENT_QUANTCTL_EXIT_CODES_H_

#include "absl/status/status.h"

namespace quantd::quantctl {

enum ExitCode : int {
  kExitOk = 0,            // command done; for watch/--watch: the job SUCCEEDED
  kExitJobFailed = 1,     // the watched job FAILED
  kExitJobCancelled = 2,  // the watched job was CANCELLED
  kExitUsage = 64,        // bad command line
  kExitInvalidInput = 65, // invalid job spec or argument (INVALID_ARGUMENT, ALREADY_EXISTS)
  kExitNotFound = 66,     // no such job or file
  kExitInternal = 70,     // the server failed (INTERNAL and other codes)
  kExitUnavailable = 69,  // server down, unreachable or too slow
  kExitPermission = 77,   // wrong/missing token or another owner's job
};

// The exit code for a failed call.
int ExitCodeFor(const absl::Status& status);

}  // namespace quantd::quantctl

#endif  // QUANTD_CLIENT_QUANTCTL_EXIT_CODES_H_
