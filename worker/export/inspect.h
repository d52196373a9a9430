// `quantd-worker inspect DIR`: a readable summary of an export — bit widths, groups, modes,
// rotation, prefix tokens, metrics, file sizes and the compression ratio against the input
// model's safetensors — after the same checks as loading (artifact_reader.h).
#ifndef QUANTD_WORKER_EXPORT_INSPECT_H_
#define QUANTD_WORKER_EXPORT_INSPECT_H_

#include <string>

#include "absl/status/statusor.h"
#include "nlohmann/json.hpp"

namespace quantd::exporter {

// The summary as JSON: {"dir", "dtype", "weight", "activation", "kv_cache", "rotation",
// "prefix", "metrics", "files": [{"name", "bytes"}], "artifact_bytes", "input_bytes",
// "compression_ratio" (input / artifact; 0 when the input size is unknown), "timings"}.
absl::StatusOr<nlohmann::json> InspectArtifact(const std::string& dir);

// The same as aligned text lines.
std::string FormatInspection(const nlohmann::json& summary);

}  // namespace quantd::exporter

#endif  // QUANTD_WORKER_EXPORT_INSPECT_H_
