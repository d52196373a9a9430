// How quantctl prints API messages: tables for people, JSON or YAML for scripts, and one
// plain line per job event.
#ifndef QUANTD_CLIENT_QUANTCTL_OUTPUT_H_
#define QUANTD_CLIENT_QUANTCTL_OUTPUT_H_

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "google/protobuf/message.h"
#include "client/format/event_format.h"
#include "quantd/v1/job.pb.h"

namespace quantd::quantctl {

using format::FormatEventLine;
using format::ShortName;

enum class OutputFormat { kTable, kJson, kYaml };

// "table", "json" or "yaml"; INVALID_ARGUMENT otherwise.
absl::StatusOr<OutputFormat> ParseOutputFormat(const std::string& name);

// One JSON document (pretty) or YAML document for `message`, with the .proto field names.
std::string FormatMessage(const google::protobuf::Message& message, OutputFormat format);

// squeue-like columns: JOB_ID OWNER STATE PHASE PROGRESS PRIO MODEL WORKER REASON.
std::string FormatJobTable(const std::vector<v1::Job>& jobs);

}  // namespace quantd::quantctl

#endif  // QUANTD_CLIENT_QUANTCTL_OUTPUT_H_
