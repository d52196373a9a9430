#include "worker/quant/outliers.h"

#include <algorithm>
#include <cmath>
#include <set>

#include "absl/strings/str_cat.h"
#include "proto/common/status_macros.h"

namespace quantd::quant {
namespace {

// Keeps max_c |X| per token of each layer's down_proj input.
class DownInputMax : public model::ActivationObserver {
 public:
  explicit DownInputMax(size_t layers) : per_layer(layers) {}
  bool Wants(int, model::ActivationSite site) const override {
    return site == model::ActivationSite::kDownProjInput;
  }
  void Observe(int layer, model::ActivationSite, const torch::Tensor& x) override {
    per_layer[layer] = x.detach().abs().amax(-1)[0].to(torch::kFloat32).cpu();
  }
  std::vector<torch::Tensor> per_layer;  // [tokens]
};

}  // namespace

absl::StatusOr<OutlierStats> MeasureOutliers(
    model::LlamaModel& model, const std::vector<std::vector<int32_t>>& windows, double threshold,
    const model::KvCache* prefix, const std::function<bool(int64_t, int64_t)>& progress) {
  if (windows.empty()) return absl::InvalidArgumentError("outlier detection: no windows");
  const size_t layers = model.blocks.size();
  OutlierStats stats;
  stats.top_ratio.assign(layers, 0.0);
  stats.mean_count.assign(layers, 0.0);
  torch::NoGradGuard no_grad;
  for (size_t w = 0; w < windows.size(); ++w) {
    const auto& window = windows[w];
    DownInputMax observer(layers);
    model::ForwardRequest request;
    request.input_ids =
        torch::tensor(std::vector<int64_t>(window.begin(), window.end()), torch::kInt64)
            .unsqueeze(0);
    request.past = prefix;
    request.observer = &observer;
    request.logits = model::LogitsMode::kNone;
    ASSIGN_OR_RETURN(model::ForwardResult result, model.Forward(request));
    (void)result;
    std::set<int64_t> flagged;
    for (size_t l = 0; l < layers; ++l) {
      const torch::Tensor& m = observer.per_layer[l];
      // Lower median, as torch.median.
      const double median = std::max(m.median().item<double>(), 1e-12);
      const auto ratio = m.to(torch::kFloat64) / median;
      stats.top_ratio[l] += ratio.max().item<double>();
      auto acc = ratio.accessor<double, 1>();
      int64_t count = 0;
      for (int64_t i = 1; i < ratio.size(0); ++i) {
        if (acc[i] > threshold) {
          ++count;
          flagged.insert(i);
        }
      }
      stats.mean_count[l] += static_cast<double>(count);
    }
    for (int64_t i : flagged) ++stats.token_counts[window[i]];
    if (progress && !progress(static_cast<int64_t>(w) + 1, windows.size())) {
      return absl::CancelledError("outlier detection cancelled");
    }
  }
  for (size_t l = 0; l < layers; ++l) {
    stats.top_ratio[l] /= windows.size();
    stats.mean_count[l] /= windows.size();
  }
  return stats;
}

OutlierTokens ChooseOutlierTokens(const OutlierStats& stats, int32_t bos_id) {
  OutlierTokens out;
  double most = 0;
  for (double c : stats.mean_count) most = std::max(most, c);
  out.count = static_cast<int64_t>(std::ceil(most - 1e-9));
  std::vector<std::pair<int64_t, int32_t>> ranked;
  for (const auto& [id, n] : stats.token_counts) {
    if (id != bos_id) ranked.push_back({-n, id});
  }
  std::sort(ranked.begin(), ranked.end());
  for (size_t i = 0; i < ranked.size() && static_cast<int64_t>(i) < out.count; ++i) {
    out.token_ids.push_back(ranked[i].second);
  }
  out.prefix_ids = out.token_ids;
  if (bos_id >= 0) out.prefix_ids.push_back(bos_id);
  return out;
}

}  // namespace quantd::quant
