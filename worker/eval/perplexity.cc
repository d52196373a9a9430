#include "worker/eval/perplexity.h"

#include <algorithm>
#include <cmath>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "proto/common/status_macros.h"

namespace quantd::eval {
torch::Tensor TargetLogProbsFromHidden(model::LlamaModel& model, const torch::Tensor& hidden,
                                       const torch::Tensor& targets, int64_t max_logit_elements) {
  const int64_t rows = hidden.size(0);
  const torch::Tensor on_device = targets.to(hidden.device());
  torch::Tensor out = torch::empty({rows}, hidden.options().dtype(torch::kFloat64));
  const int64_t chunk = std::max<int64_t>(1, max_logit_elements / model.config().vocab_size);
  for (int64_t start = 0; start < rows; start += chunk) {
    const int64_t n = std::min(chunk, rows - start);
    auto logits = model.lm_head->Forward(hidden.narrow(0, start, n)).to(torch::kFloat32);
    out.narrow(0, start, n)
        .copy_(torch::log_softmax(logits, -1)
                   .gather(-1, on_device.narrow(0, start, n).unsqueeze(-1))
                   .squeeze(-1));
  }
  return out;
}

double SumNllFromHidden(model::LlamaModel& model, const torch::Tensor& hidden,
                        const torch::Tensor& targets) {
  if (hidden.size(0) == 0) return 0.0;
  return -TargetLogProbsFromHidden(model, hidden, targets).sum().item<double>();
}

absl::StatusOr<PerplexityResult> EvaluatePerplexity(model::LlamaModel& model,
                                                    const std::vector<int32_t>& tokens,
                                                    const PerplexityOptions& options) {
  if (options.seqlen < 2) return absl::InvalidArgumentError("perplexity: seqlen must be >= 2");
  if (options.batch_size < 1) {
    return absl::InvalidArgumentError("perplexity: batch_size must be >= 1");
  }
  if (options.max_windows < 0) {
    return absl::InvalidArgumentError("perplexity: max_windows must be >= 0");
  }
  int64_t windows = static_cast<int64_t>(tokens.size()) / options.seqlen;
  if (options.max_windows > 0) windows = std::min(windows, options.max_windows);
  if (windows == 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "perplexity: ", tokens.size(), " tokens hold no full window of ", options.seqlen));
  }
  torch::NoGradGuard no_grad;
  const auto all =
      torch::tensor(std::vector<int64_t>(tokens.begin(), tokens.begin() + windows * options.seqlen),
                    torch::kInt64)
          .view({windows, options.seqlen});
  double total_nll = 0.0;
  for (int64_t first = 0; first < windows; first += options.batch_size) {
    const int64_t count = std::min(options.batch_size, windows - first);
    model::ForwardRequest request;
    request.input_ids = all.narrow(0, first, count);
    request.past = options.prefix;
    request.logits = model::LogitsMode::kNone;  // scored below in chunks: [T, vocab] is big
    ASSIGN_OR_RETURN(model::ForwardResult result, model.Forward(request));
    try {
      for (int64_t row = 0; row < count; ++row) {
        total_nll += SumNllFromHidden(model, result.hidden[row].narrow(0, 0, options.seqlen - 1),
                                      request.input_ids[row].narrow(0, 1, options.seqlen - 1));
      }
    } catch (const std::exception& e) {
      return absl::InternalError(absl::StrCat("perplexity: scoring failed: ", e.what()));
    }
  }
  PerplexityResult result;
  result.windows = windows;
  result.predictions = windows * (options.seqlen - 1);
  result.mean_nll = total_nll / static_cast<double>(result.predictions);
  result.perplexity = std::exp(result.mean_nll);
  return result;
}

}  // namespace quantd::eval
