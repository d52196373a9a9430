#include "worker/quant/quantizers.h"

#include <stdexcept>

#include "absl/strings/str_cat.h"
#include "kernels/fake_quant_torch.h"

namespace quantd::quant {
namespace {

template <typename T>
T ValueOrThrow(absl::StatusOr<T> result) {
  if (!result.ok()) throw std::runtime_error(std::string(result.status().message()));
  return std::move(result).value();
}

}  // namespace

absl::StatusOr<torch::Tensor> QuantizeWeight(const torch::Tensor& weight,
                                             const WeightQuantSettings& settings) {
  auto quantized = QuantizeWeightWithScales(weight, settings);
  if (!quantized.ok()) return quantized.status();
  return quantized->values;
}

absl::StatusOr<QuantizedWeight> QuantizeWeightWithScales(const torch::Tensor& weight,
                                                         const WeightQuantSettings& settings) {
  if (!QuantEnabled(settings.bits)) return QuantizedWeight{weight, torch::Tensor()};
  kernels::FakeQuantConfig config;
  config.bits = settings.bits;
  if (settings.group_size > 0) {
    if (weight.size(1) % settings.group_size != 0) {
      return absl::InvalidArgumentError(absl::StrCat("weight group size ", settings.group_size,
                                                     " does not divide ", weight.size(1)));
    }
    config.granularity = kernels::QuantGranularity::kPerGroup;
    config.group_size = settings.group_size;
  } else {
    config.granularity = kernels::QuantGranularity::kPerToken;
  }
  const torch::Tensor w = weight.detach().to(torch::kFloat32).contiguous();
  const int64_t groups = settings.group_size > 0 ? weight.size(1) / settings.group_size : 1;
  if (settings.mse_init) {
    auto scales = kernels::MseSearchScales(w, config);
    if (!scales.ok()) return scales.status();
    auto q = kernels::FakeQuantizeStatic(w, config, *scales);
    if (!q.ok()) return q.status();
    return QuantizedWeight{q->to(weight.scalar_type()),
                           scales->reshape({weight.size(0), groups}).contiguous()};
  }
  auto q = kernels::FakeQuantizeDynamic(w, config);
  if (!q.ok()) return q.status();
  return QuantizedWeight{q->values.to(weight.scalar_type()),
                         q->scales.reshape({weight.size(0), groups}).contiguous()};
}

torch::Tensor ActQuantizer::GroupAbsMax(const torch::Tensor& x) const {
  auto a = x.detach().abs().to(torch::kFloat32);
  if (group_size_ <= 0) return a.amax();
  // x: [batch, heads, tokens, head_dim] -> one value per (head, group).
  const int64_t dim = x.size(-1);
  auto g = a.reshape({a.size(0), a.size(1), a.size(2), dim / group_size_, group_size_});
  return g.amax({0, 2, 4}).unsqueeze(0).unsqueeze(2);
}

void ActQuantizer::Observe(const torch::Tensor& x) {
  auto m = GroupAbsMax(x);
  observed_max_ = observed_max_.defined()
                      ? torch::maximum(observed_max_.to(m.device(), torch::kFloat32), m)
                      : m;
}

absl::Status ActQuantizer::Finalize() {
  if (!observed_max_.defined()) {
    return absl::FailedPreconditionError("static quantizer finalized before any calibration");
  }
  auto s = observed_max_ / static_cast<float>(kernels::QuantMax(bits_));
  scales_ = torch::where(s > 0, s, torch::ones_like(s)).contiguous();
  observed_max_ = torch::Tensor();
  return absl::OkStatus();
}

torch::Tensor ActQuantizer::Apply(const torch::Tensor& x) const {
  if (!enabled()) return x;
  kernels::FakeQuantConfig config;
  config.bits = bits_;
  if (group_size_ > 0 && group_size_ < x.size(-1)) {
    config.granularity = kernels::QuantGranularity::kPerGroup;
    config.group_size = group_size_;
  } else if (!dynamic_ && group_size_ <= 0) {
    config.granularity = kernels::QuantGranularity::kPerTensor;
  } else {
    config.granularity = kernels::QuantGranularity::kPerToken;
  }
  const torch::Tensor input = x.contiguous();
  // Inside a training graph (the K/V path of a block being fine-tuned) the straight-through
  // forms let the gradient pass to x; the kernels below would cut it.
  const bool keep_gradient = torch::GradMode::is_enabled() && x.requires_grad();
  if (dynamic_) {
    if (keep_gradient) {
      return ValueOrThrow(
                 kernels::FakeQuantizeDynamicSte(
                     input, config, torch::full({}, clip_ratio_, torch::kFloat32).to(x.device())))
          .values;
    }
    return ValueOrThrow(kernels::FakeQuantizeDynamic(input, config, clip_ratio_)).values;
  }
  if (!scales_.defined()) throw std::runtime_error("static quantizer used before calibration");
  torch::Tensor scales = scales_.to(x.device(), torch::kFloat32);
  if (config.granularity == kernels::QuantGranularity::kPerToken) {
    // One static scale per head (group = head_dim): [1, heads, 1, 1].
    scales = scales.view({1, scales.size(1), 1, 1});
  }
  if (keep_gradient) return ValueOrThrow(kernels::FakeQuantizeSte(input, config, scales.detach()));
  return ValueOrThrow(kernels::FakeQuantizeStatic(input, config, scales));
}

}  // namespace quantd::quant
