#include "worker/quant/calibration_data.h"

#include <random>
#include <set>

#include "absl/strings/str_cat.h"

namespace quantd::quant {

absl::StatusOr<CalibrationWindows> SampleWindows(const std::vector<int32_t>& tokens, int64_t train,
                                                 int64_t val, int64_t seqlen, uint64_t seed,
                                                 int32_t bos_id) {
  const int64_t n = static_cast<int64_t>(tokens.size());
  if (seqlen < 2 || n < seqlen + 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("calibration data: ", n, " tokens are too few for windows of ", seqlen));
  }
  std::mt19937_64 rng(seed);
  std::uniform_int_distribution<int64_t> offset(0, n - seqlen - 1);
  std::set<int64_t> used;
  CalibrationWindows out;
  const int64_t total = train + val;
  for (int64_t i = 0; i < total; ++i) {
    int64_t start = offset(rng);
    for (int tries = 0; tries < 16 && used.count(start) > 0; ++tries) start = offset(rng);
    used.insert(start);
    if (tokens[start] == bos_id) ++start;
    std::vector<int32_t> window(tokens.begin() + start, tokens.begin() + start + seqlen);
    (i < train ? out.train : out.val).push_back(std::move(window));
  }
  return out;
}

}  // namespace quantd::quant
