// Greedy decoding with a KV cache, for sanity checks and the `generate` sub-command.
#ifndef QUANTD_WORKER_EVAL_GENERATE_H_
#define QUANTD_WORKER_EVAL_GENERATE_H_

#include <cstdint>
#include <vector>

#include "absl/status/statusor.h"
#include "worker/model/llama.h"

namespace quantd::eval {

struct GenerateOptions {
  int64_t max_new_tokens = 32;
  bool stop_at_eos = true;                 // stop after producing one of config().eos_token_ids
  const model::KvCache* prefix = nullptr;  // optional unscored context before the prompt
  // [vocab]: the prediction after the prefix's last token; with it the prompt may be empty
  // (the first token is its argmax).
  torch::Tensor prefix_last_logits;
};

// Returns the newly generated ids (the prompt is not repeated). The prompt must be non-empty
// unless a prefix and its last logits are given. INVALID_ARGUMENT for bad ids or options;
// forward-pass errors pass through. Runs without autograd.
absl::StatusOr<std::vector<int64_t>> GreedyGenerate(model::LlamaModel& model,
                                                    const std::vector<int64_t>& prompt,
                                                    const GenerateOptions& options);

}  // namespace quantd::eval

#endif  // QUANTD_WORKER_EVAL_GENERATE_H_
