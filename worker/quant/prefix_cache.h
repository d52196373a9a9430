// The prefixed KV cache (DESIGN.md §3.6) and perplexity measured after it (§3.9).
//
// A PrefixCache is built once from the full-precision (rotated) model, before quantizers are
// installed, and never quantized: only new tokens pass through a block's KvTransform. When the
// prefix ends with BOS, a window that itself starts with BOS is fed without that BOS (no double
// BOS): its first prediction then comes from the prefix's last logits, so every window still
// scores exactly seqlen - 1 predictions.
#ifndef QUANTD_WORKER_QUANT_PREFIX_CACHE_H_
#define QUANTD_WORKER_QUANT_PREFIX_CACHE_H_

#include <cstdint>
#include <functional>
#include <vector>

#include "absl/status/statusor.h"
#include "worker/eval/multiple_choice.h"
#include "worker/model/llama.h"

namespace quantd::quant {

struct PrefixCache {
  std::vector<int32_t> ids;
  model::KvCache kv;          // batch 1, one entry per layer
  torch::Tensor last_logits;  // [vocab] fp32: the prediction after the last prefix token
  int32_t bos_id = -1;        // the model's BOS (for the double-BOS rule)
};

// INVALID_ARGUMENT for an empty prefix; forward errors pass through.
absl::StatusOr<PrefixCache> BuildPrefixCache(model::LlamaModel& model,
                                             const std::vector<int32_t>& ids, int32_t bos_id);

struct WindowEval {
  int64_t seqlen = 2048;
  int64_t max_windows = 0;  // 0: every full window
  int64_t batch_size = 4;
  const PrefixCache* prefix = nullptr;  // not owned
};

struct WindowPerplexity {
  std::vector<double> window_nll;  // mean NLL of each window (nats)
  int64_t predictions = 0;
  double mean_nll = 0;
  double perplexity = 0;
};

// The prefix as the unscored context of zero-shot scoring (eval/multiple_choice.h); refers
// to `prefix`, which must outlive it.
eval::ScoringPrefix AsScoringPrefix(const PrefixCache& prefix);

// The standard protocol (non-overlapping windows of seqlen tokens, tokens 2..seqlen predicted)
// with the optional prefix as unscored context. `progress(done, total)` after each batch may
// return false to stop (CANCELLED). INVALID_ARGUMENT for seqlen < 2 or no full window. The LM
// head runs on blocks of positions (eval::SumNllFromHidden): a batch never holds all its logits.
absl::StatusOr<WindowPerplexity> EvaluateWindows(
    model::LlamaModel& model, const std::vector<int32_t>& tokens, const WindowEval& options,
    const std::function<bool(int64_t, int64_t)>& progress = {});

}  // namespace quantd::quant

#endif  // QUANTD_WORKER_QUANT_PREFIX_CACHE_H_
