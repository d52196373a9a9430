// Calibration windows (DESIGN.md §3.2): `train` + `val` windows of `seqlen` tokens cut at
// seeded random offsets of a token stream (distinct offsets; windows may overlap). A window
// never starts with `bos_id` (the offset moves one token on), so that a prefix ending in BOS is
// never followed by a second one.
#ifndef QUANTD_WORKER_QUANT_CALIBRATION_DATA_H_
#define QUANTD_WORKER_QUANT_CALIBRATION_DATA_H_

#include <cstdint>
#include <vector>

#include "absl/status/statusor.h"

namespace quantd::quant {

struct CalibrationWindows {
  std::vector<std::vector<int32_t>> train;
  std::vector<std::vector<int32_t>> val;
};

// INVALID_ARGUMENT when the stream is shorter than seqlen + 1 tokens or seqlen < 2.
absl::StatusOr<CalibrationWindows> SampleWindows(const std::vector<int32_t>& tokens, int64_t train,
                                                 int64_t val, int64_t seqlen, uint64_t seed,
                                                 int32_t bos_id);

}  // namespace quantd::quant

#endif  // QUANTD_WORKER_QUANT_CALIBRATION_DATA_H_
