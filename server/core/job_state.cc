#include "server/core/job_state.h"

namespace quantd {

using v1::JobState;

bool IsTerminal(JobState state) {
  return state == v1::JOB_STATE_SUCCEEDED || state == v1::JOB_STATE_FAILED ||
         state == v1::JOB_STATE_CANCELLED;
}

bool IsActive(JobState state) {
  return state == v1::JOB_STATE_ASSIGNED || state == v1::JOB_STATE_RUNNING ||
         state == v1::JOB_STATE_CANCELLING;
}

absl::Status CheckTransition(JobState from, JobState to) {
  bool ok = false;
  switch (from) {
    case v1::JOB_STATE_UNSPECIFIED:
      ok = to == v1::JOB_STATE_QUEUED;
      break;
    case v1::JOB_STATE_QUEUED:
      ok = to == v1::JOB_STATE_ASSIGNED || to == v1::JOB_STATE_CANCELLED;
      break;
    case v1::JOB_STATE_ASSIGNED:
      ok = to == v1::JOB_STATE_RUNNING || to == v1::JOB_STATE_QUEUED ||
           to == v1::JOB_STATE_CANCELLING || to == v1::JOB_STATE_FAILED;
      break;
    case v1::JOB_STATE_RUNNING:
      ok = to == v1::JOB_STATE_SUCCEEDED || to == v1::JOB_STATE_FAILED ||
           to == v1::JOB_STATE_CANCELLING || to == v1::JOB_STATE_QUEUED;
      break;
    case v1::JOB_STATE_CANCELLING:
      ok = to == v1::JOB_STATE_CANCELLED || to == v1::JOB_STATE_SUCCEEDED ||
           to == v1::JOB_STATE_FAILED;
      break;
    default:
      ok = false;
  }
  if (ok) return absl::OkStatus();
  return absl::FailedPreconditionError("illegal job state transition " + StateName(from) + " -> " +
                                       StateName(to));
}

std::string StateName(JobState state) {
  std::string name = v1::JobState_Name(state);
  const std::string prefix = "JOB_STATE_";
  if (name.rfind(prefix, 0) == 0) name = name.substr(prefix.size());
  return name.empty() ? "STATE_" + std::to_string(static_cast<int>(state)) : name;
}

}  // namespace quantd
