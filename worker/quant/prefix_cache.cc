#include "worker/quant/prefix_cache.h"

#include <algorithm>
#include <cmath>

#include "absl/strings/str_cat.h"
#include "proto/common/status_macros.h"
#include "worker/eval/perplexity.h"

namespace quantd::quant {
absl::StatusOr<PrefixCache> BuildPrefixCache(model::LlamaModel& model,
                                             const std::vector<int32_t>& ids, int32_t bos_id) {
  if (ids.empty()) return absl::InvalidArgumentError("prefix cache: empty prefix");
  torch::NoGradGuard no_grad;
  model::ForwardRequest request;
  request.input_ids =
      torch::tensor(std::vector<int64_t>(ids.begin(), ids.end()), torch::kInt64).unsqueeze(0);
  request.logits = model::LogitsMode::kLast;
  request.return_kv = true;
  ASSIGN_OR_RETURN(model::ForwardResult result, model.Forward(request));
  PrefixCache cache;
  cache.ids = ids;
  cache.kv = std::move(result.kv);
  cache.last_logits = result.logits.view({-1}).to(torch::kFloat32);
  cache.bos_id = bos_id;
  return cache;
}

eval::ScoringPrefix AsScoringPrefix(const PrefixCache& prefix) {
  eval::ScoringPrefix out;
  out.kv = &prefix.kv;
  out.last_logits = prefix.last_logits;
  out.length = static_cast<int64_t>(prefix.ids.size());
  out.ends_with_bos =
      !prefix.ids.empty() && prefix.bos_id >= 0 && prefix.ids.back() == prefix.bos_id;
  return out;
}

absl::StatusOr<WindowPerplexity> EvaluateWindows(
    model::LlamaModel& model, const std::vector<int32_t>& tokens, const WindowEval& options,
    const std::function<bool(int64_t, int64_t)>& progress) {
  const int64_t seqlen = options.seqlen;
  if (seqlen < 2) return absl::InvalidArgumentError("perplexity: seqlen must be >= 2");
  int64_t windows = static_cast<int64_t>(tokens.size()) / seqlen;
  if (options.max_windows > 0) windows = std::min(windows, options.max_windows);
  if (windows == 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("perplexity: ", tokens.size(), " tokens hold no full window of ", seqlen));
  }
  const PrefixCache* prefix = options.prefix;
  const bool prefix_ends_bos = prefix != nullptr && !prefix->ids.empty() &&
                               prefix->ids.back() == prefix->bos_id && prefix->bos_id >= 0;
  auto starts_bos = [&](int64_t w) {
    return prefix_ends_bos && tokens[w * seqlen] == prefix->bos_id;
  };
  WindowPerplexity out;
  out.window_nll.assign(windows, 0.0);
  try {
    torch::NoGradGuard no_grad;
    std::vector<int64_t> plain, dropped;
    for (int64_t w = 0; w < windows; ++w) (starts_bos(w) ? dropped : plain).push_back(w);
    const int64_t batch = std::max<int64_t>(1, options.batch_size);
    int64_t done = 0;
    auto report = [&](int64_t n) {
      done += n;
      return !progress || progress(done, windows);
    };
    // Windows fed as they are.
    for (size_t first = 0; first < plain.size(); first += batch) {
      const int64_t count = std::min<int64_t>(batch, plain.size() - first);
      std::vector<int64_t> flat;
      for (int64_t i = 0; i < count; ++i) {
        const int64_t w = plain[first + i];
        flat.insert(flat.end(), tokens.begin() + w * seqlen, tokens.begin() + (w + 1) * seqlen);
      }
      auto ids = torch::tensor(flat, torch::kInt64).view({count, seqlen});
      model::ForwardRequest request;
      request.input_ids = ids;
      request.past = prefix != nullptr ? &prefix->kv : nullptr;
      request.logits = model::LogitsMode::kNone;  // scored from the hidden states in blocks
      ASSIGN_OR_RETURN(model::ForwardResult result, model.Forward(request));
      for (int64_t i = 0; i < count; ++i) {
        out.window_nll[plain[first + i]] =
            eval::SumNllFromHidden(model, result.hidden[i].narrow(0, 0, seqlen - 1),
                                   ids[i].narrow(0, 1, seqlen - 1)) /
            (seqlen - 1);
      }
      if (!report(count)) return absl::CancelledError("evaluation cancelled");
    }
    // Windows whose BOS is the prefix's own last token: the prefix's last logits predict their
    // first token.
    const torch::Tensor after_prefix =
        dropped.empty() ? torch::Tensor()
                        : torch::log_softmax(prefix->last_logits.to(torch::kFloat32), -1).cpu();
    for (const int64_t w : dropped) {
      std::vector<int64_t> rest(tokens.begin() + w * seqlen + 1, tokens.begin() + (w + 1) * seqlen);
      auto ids = torch::tensor(rest, torch::kInt64).unsqueeze(0);
      model::ForwardRequest request;
      request.input_ids = ids;
      request.past = &prefix->kv;
      request.logits = model::LogitsMode::kNone;
      ASSIGN_OR_RETURN(model::ForwardResult result, model.Forward(request));
      const double first_nll = -after_prefix[rest[0]].item<double>();
      out.window_nll[w] =
          (first_nll + eval::SumNllFromHidden(model, result.hidden[0].narrow(0, 0, seqlen - 2),
                                              ids[0].narrow(0, 1, seqlen - 2))) /
          (seqlen - 1);
      if (!report(1)) return absl::CancelledError("evaluation cancelled");
    }
  } catch (const std::exception& e) {
    return absl::InternalError(absl::StrCat("perplexity failed: ", e.what()));
  }
  double total = 0;
  for (double nll : out.window_nll) total += nll * (seqlen - 1);
  out.predictions = windows * (seqlen - 1);
  out.mean_nll = total / static_cast<double>(out.predictions);
  out.perplexity = std::exp(out.mean_nll);
  return out;
}

}  // namespace quantd::quant
