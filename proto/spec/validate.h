// Validation of a JobSpec, shared by the scheduler (on submit), quantctl (before sending)
// and the worker (once the model's shape is known).
//
// Every error is INVALID_ARGUMENT and its message starts with the field's path, e.g.
// "quant.wbits: must be 2..8 or 16, got 9".
#ifndef QUANTD_PROTO_SPEC_VALIDATE_H_
#define QUANTD_PROTO_SPEC_VALIDATE_H_

#include <cstdint>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "quantd/v1/job.pb.h"

namespace quantd {

// Checks what can be checked without the model: required paths, bit widths, positive
// sizes, ranges, enum values. Expects ApplyDefaults to have run (unset optional fields
// are treated as their defaults either way).
absl::Status ValidateSpec(const v1::JobSpec& spec);

// The model dimensions that bound a spec.
struct ModelShape {
  int64_t hidden_size = 0;
  int64_t intermediate_size = 0;
  int64_t head_dim = 0;
  int64_t num_layers = 0;
};

// Checks what depends on the model: weight groups divide every linear input size
// (hidden_size and intermediate_size), KV groups divide head_dim, target layers exist.
absl::Status ValidateSpecForModel(const v1::JobSpec& spec, const ModelShape& shape);

// Parses a memory size such as "65GiB", "512MiB", "40GB" or "1073741824" into bytes.
absl::StatusOr<int64_t> ParseMemorySize(const std::string& text);

}  // namespace quantd

#endif  // QUANTD_PROTO_SPEC_VALIDATE_H_
