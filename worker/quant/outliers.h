// Outlier tokens (DESIGN.md §3.4). For each layer and window, X is the down_proj input
// (tokens × d_ff), m_i = max_c |X_ic| and r_i = m_i / median(m); a token is an outlier when
// r_i > threshold. The number of prefixed tokens is o = ceil(max over layers of the mean count
// per window of outliers at positions >= 1); the prefix is the o most frequent outlier token ids
// (position 0 and BOS excluded; fewer when fewer distinct ids exist) followed by BOS. No
// outliers give the prefix [BOS].
#ifndef QUANTD_WORKER_QUANT_OUTLIERS_H_
#define QUANTD_WORKER_QUANT_OUTLIERS_H_

#include <cstdint>
#include <functional>
#include <map>
#include <vector>

#include "absl/status/statusor.h"
#include "worker/model/llama.h"

namespace quantd::quant {

struct OutlierStats {
  // Per layer: the mean over windows of max_i r_i (the top-1/median ratio).
  std::vector<double> top_ratio;
  // Per layer: the mean over windows of the number of outliers at positions >= 1.
  std::vector<double> mean_count;
  // Outlier occurrences (positions >= 1, any layer, counted once per position) by token id.
  std::map<int32_t, int64_t> token_counts;
};

// Runs `windows` (each its own batch-1 pass, after the optional `prefix` cache; its tokens are
// not measured). `progress(done, total)` may return false to stop (CANCELLED).
absl::StatusOr<OutlierStats> MeasureOutliers(
    model::LlamaModel& model, const std::vector<std::vector<int32_t>>& windows, double threshold,
    const model::KvCache* prefix = nullptr,
    const std::function<bool(int64_t, int64_t)>& progress = {});

struct OutlierTokens {
  int64_t count = 0;                // o
  std::vector<int32_t> token_ids;   // the chosen outlier tokens, most frequent first
  std::vector<int32_t> prefix_ids;  // token_ids followed by BOS
};

OutlierTokens ChooseOutlierTokens(const OutlierStats& stats, int32_t bos_id);

}  // namespace quantd::quant

#endif  // QUANTD_WORKER_QUANT_OUTLIERS_H_
