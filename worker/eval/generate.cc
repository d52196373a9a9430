#include "worker/eval/generate.h"

#include <algorithm>

#include "absl/status/status.h"
#include "proto/common/status_macros.h"

namespace quantd::eval {

absl::StatusOr<std::vector<int64_t>> GreedyGenerate(model::LlamaModel& model,
                                                    const std::vector<int64_t>& prompt,
                                                    const GenerateOptions& options) {
  if (options.max_new_tokens < 0) {
    return absl::InvalidArgumentError("generate: max_new_tokens must be >= 0");
  }
  const bool from_prefix_logits =
      prompt.empty() && options.prefix != nullptr && options.prefix_last_logits.defined();
  if (prompt.empty() && !from_prefix_logits) {
    return absl::InvalidArgumentError(
        "generate: the prompt needs at least one token (or a prefix with its last logits)");
  }
  torch::NoGradGuard no_grad;
  const auto& eos = model.config().eos_token_ids;
  std::vector<int64_t> generated;
  model::KvCache cache;
  if (options.prefix != nullptr) cache = *options.prefix;
  std::vector<int64_t> next_input = prompt;
  if (from_prefix_logits && options.max_new_tokens > 0) {
    const int64_t token = options.prefix_last_logits.reshape({-1}).argmax().item<int64_t>();
    generated.push_back(token);
    next_input = {token};
    if (options.stop_at_eos && std::find(eos.begin(), eos.end(), token) != eos.end()) {
      return generated;
    }
  }
  while (static_cast<int64_t>(generated.size()) < options.max_new_tokens) {
    model::ForwardRequest request;
    request.input_ids =
        torch::tensor(next_input, torch::kInt64).view({1, static_cast<int64_t>(next_input.size())});
    request.past = &cache;
    request.logits = model::LogitsMode::kLast;
    request.return_kv = true;
    ASSIGN_OR_RETURN(model::ForwardResult result, model.Forward(request));
    const int64_t token = result.logits.view({-1}).argmax().item<int64_t>();
    generated.push_back(token);
    cache = std::move(result.kv);
    next_input = {token};
    if (options.stop_at_eos && std::find(eos.begin(), eos.end(), token) != eos.end()) break;
  }
  return generated;
}

}  // namespace quantd::eval
