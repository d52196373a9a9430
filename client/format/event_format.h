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
// Printable: text from users and workers cannot reach the terminal as control characters.
std::string FormatEventLine(const v1::JobEvent& event);

// `text` safe to print on a terminal: control characters (C0, DEL, and C1 written as UTF-8),
// which could move the cursor, clear the screen or retitle the window, are shown as "\x1b"
// style escapes (tabs stay); a newline becomes "\n" unless `keep_newlines`. Other bytes are
// unchanged.
std::string Printable(const std::string& text, bool keep_newlines = false);

}  // namespace quantd::format

#endif  // QUANTD_CLIENT_FORMAT_EVENT_FORMAT_H_
