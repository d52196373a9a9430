// The job state machine.
//
//   QUEUED ──▶ ASSIGNED ──▶ RUNNING ──▶ SUCCEEDED | FAILED
//     │           │  ▲         │  ▲
//     │           │  └─ requeue┘  │   (ASSIGNED/RUNNING ──▶ QUEUED when the worker is lost,
//     │           ▼               │    stops the job unasked, or rejects the assignment)
//     │        CANCELLING ◀───────┘
//     │           └──▶ CANCELLED | SUCCEEDED | FAILED
//     └──▶ CANCELLED
//
// ASSIGNED may also go straight to FAILED (attempts exhausted, or the job process failed to
// start). Terminal states have no way out. Every state change of a job goes through
// CheckTransition, so an illegal change cannot be recorded.
#ifndef QUANTD_SERVER_CORE_JOB_STATE_H_
#define QUANTD_SERVER_CORE_JOB_STATE_H_

#include <string>

#include "absl/status/status.h"
#include "quantd/v1/job.pb.h"

namespace quantd {

// SUCCEEDED, FAILED or CANCELLED.
bool IsTerminal(v1::JobState state);

// ASSIGNED, RUNNING or CANCELLING: the job holds devices on a worker.
bool IsActive(v1::JobState state);

// OK when `from` -> `to` is an edge of the diagram above; FAILED_PRECONDITION otherwise,
// naming both states.
absl::Status CheckTransition(v1::JobState from, v1::JobState to);

// "QUEUED", "RUNNING", ... (the enum name without its prefix).
std::string StateName(v1::JobState state);

}  // namespace quantd

#endif  // QUANTD_SERVER_CORE_JOB_STATE_H_
