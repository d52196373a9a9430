// Human-readable names and one-line renderings of API messages, shared by quantctl and
// quantd-worker's local mode. No gRPC.
#ifndef QUANTD_CLIENT_FORMAT_EVENT_FORMAT_H_
#define QUANTD_CLIENT_FORMAT_EVENT_FORMAT_H_

#include <string>

#include "quantd/v1/job.pb.h"

namespace quantd::format {

// "RUNNING" for JOB_STATE_RUNNING; phases in lower case ("train_prefix"); "OOM" for
// FAILURE_REASON_OOM.
std::string ShortName(v1::JobState state);
std::string ShortName(v1::Phase phase);
std::string ShortName(v1::FailureReason reason);

// One human line per event, e.g. "#12 loss train_prefix epoch 0 step 3 train 1.2345 ...".
std::string FormatEventLine(const v1::JobEvent& event);

}  // namespace quantd::format

#endif  // QUANTD_CLIENT_FORMAT_EVENT_FORMAT_H_
