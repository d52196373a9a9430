#include "worker/train/loss_scaler.h"

#include <algorithm>
#include <vector>

namespace quantd::train {

LossScaler LossScaler::For(torch::ScalarType activation_dtype) {
  return LossScaler(activation_dtype == torch::kHalf);
}

LossScaler::LossScaler(bool active, double initial_scale, int64_t growth_interval)
    : active_(active), scale_(active ? initial_scale : 1.0), growth_interval_(growth_interval) {}

torch::Tensor LossScaler::Scale(const torch::Tensor& loss) const {
  return active_ ? loss.to(torch::kFloat32) * scale_ : loss;
}

bool LossScaler::Unscale(const std::vector<torch::Tensor>& params) {
  if (!active_) return true;
  torch::NoGradGuard no_grad;
  std::vector<torch::Tensor> finite_flags;  // one device-side flag each, read back once
  for (const torch::Tensor& p : params) {
    if (p.grad().defined()) finite_flags.push_back(torch::isfinite(p.grad()).all());
  }
  if (!finite_flags.empty() && !torch::stack(finite_flags).all().item<bool>()) {
    for (const torch::Tensor& p : params) {
      if (p.grad().defined()) p.mutable_grad().zero_();
    }
    ++skipped_;
    good_steps_ = 0;
    scale_ = std::max(1.0, scale_ / 2);
    return false;
  }
  for (const torch::Tensor& p : params) {
    if (p.grad().defined()) p.mutable_grad().div_(scale_);
  }
  if (++good_steps_ >= growth_interval_) {
    scale_ = std::min(scale_ * 2, 16777216.0);
    good_steps_ = 0;
  }
  return true;
}

}  // namespace quantd::train
