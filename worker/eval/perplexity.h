// Perplexity with the standard protocol: cut the token stream into non-overlapping windows of
// exactly `seqlen` tokens (a short tail is dropped), predict tokens 2..seqlen of each window
// from the ones before (seqlen - 1 predictions per window), perplexity = exp(mean NLL).
// An optional prefix KV cache is unscored context before every window.
#ifndef QUANTD_WORKER_EVAL_PERPLEXITY_H_
#define QUANTD_WORKER_EVAL_PERPLEXITY_H_

#include <cstdint>
#include <vector>

#include "absl/status/statusor.h"
#include "worker/model/llama.h"

namespace quantd::eval {

struct PerplexityOptions {
  int64_t seqlen = 2048;
  int64_t max_windows = 0;                 // 0: every full window
  int64_t batch_size = 4;                  // windows per forward pass
  const model::KvCache* prefix = nullptr;  // batch-1 cache, not owned
};

struct PerplexityResult {
  int64_t windows = 0;
  int64_t predictions = 0;
  double mean_nll = 0.0;  // nats
  double perplexity = 0.0;
};

// Largest logits block the LM head makes at once: 64 Mi elements, 256 MiB in float32.
inline constexpr int64_t kMaxLogitElements = int64_t{1} << 26;

// log p(targets[i]) for final-normed hidden states [n, hidden] (ForwardResult::hidden rows)
// through the model's LM head, as a float64 tensor [n] on the hidden states' device. Logits
// are made in float32, in blocks of at most `max_logit_elements` (at least one row per
// block), so a batch never holds [n, vocab] at once. Throws on LibTorch errors.
torch::Tensor TargetLogProbsFromHidden(model::LlamaModel& model, const torch::Tensor& hidden,
                                       const torch::Tensor& targets,
                                       int64_t max_logit_elements = kMaxLogitElements);

// -sum_i log p(targets[i]), from TargetLogProbsFromHidden; 0 for n = 0.
double SumNllFromHidden(model::LlamaModel& model, const torch::Tensor& hidden,
                        const torch::Tensor& targets);

// INVALID_ARGUMENT when seqlen < 2, batch_size < 1 or the stream holds no full window;
// forward-pass errors pass through. Runs without autograd; logits are scored in blocks of at
// most 64 Mi elements (in float32), NLL accumulated in float64.
absl::StatusOr<PerplexityResult> EvaluatePerplexity(model::LlamaModel& model,
                                                    const std::vector<int32_t>& tokens,
                                                    const PerplexityOptions& options);

}  // namespace quantd::eval

#endif  // QUANTD_WORKER_EVAL_PERPLEXITY_H_
