// Reading job specs written by people: YAML or JSON files whose keys are the JobSpec field
// names (see job.proto and the README), plus "--set path=value" overrides.
//
// Keys are checked against the proto schema: an unknown key, a value of the wrong type or
// an unknown enum value is INVALID_ARGUMENT naming the key's full path, e.g.
// "quant.wbitz: unknown key". Enum values may be written in full ("QUANT_MODE_STATIC") or
// short ("static"). Parsing does not apply defaults or validate ranges; see defaults.h and
// validate.h.
#ifndef QUANTD_PROTO_SPEC_SPEC_FILE_H_
#define QUANTD_PROTO_SPEC_SPEC_FILE_H_

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "google/protobuf/message.h"
#include "quantd/v1/job.pb.h"

namespace quantd {

// Parses YAML (JSON is accepted too, being YAML) into `message`, replacing its contents.
absl::Status ParseSpecText(const std::string& text, google::protobuf::Message* message);

// Reads and parses a spec file; NOT_FOUND when it cannot be read.
absl::StatusOr<v1::JobSpec> LoadSpecFile(const std::string& path);

// Applies "dotted.path=value" overrides in order, e.g. "quant.wbits=4",
// "eval.compare=[rtn,prefixquant]". A repeated field is replaced, not appended to.
absl::Status ApplyOverrides(const std::vector<std::string>& overrides, v1::JobSpec* spec);

// The message as JSON with the .proto field names (what `--output json` prints).
std::string ToJson(const google::protobuf::Message& message, bool pretty);

}  // namespace quantd

#endif  // QUANTD_PROTO_SPEC_SPEC_FILE_H_
