// Dynamic loss scaling for training in float16. The gradient of an MSE over a block's output
// (about 2·err / numel, ~1e-8 for a Llama-2-7B block's 4M elements) is below fp16's smallest
// subnormal (6e-8), so the activations' gradients flush to zero. The loss is multiplied by
// scale() before backward and the gradients divided by it before the optimizer step. A step
// whose gradients are not all finite is skipped and the scale halved; after `growth_interval`
// good steps in a row the scale doubles (at most 2^24). An inactive scaler (any other dtype;
// bfloat16 has fp32's range) keeps scale 1 and changes nothing. Not thread-safe.
#ifndef QUANTD_WORKER_TRAIN_LOSS_SCALER_H_
#define QUANTD_WORKER_TRAIN_LOSS_SCALER_H_

#include <torch/torch.h>

#include <cstdint>
#include <vector>

namespace quantd::train {

class LossScaler {
 public:
  // Active for float16 activations.
  static LossScaler For(torch::ScalarType activation_dtype);

  explicit LossScaler(bool active, double initial_scale = 65536.0, int64_t growth_interval = 200);

  bool active() const { return active_; }
  double scale() const { return scale_; }
  int64_t skipped_steps() const { return skipped_; }

  // loss · scale() (fp32), to call backward on.
  torch::Tensor Scale(const torch::Tensor& loss) const;

  // Active: divides the defined gradients of `params` by scale(), or, when any is not finite,
  // zeroes them, halves the scale and returns false: the caller skips the step. Inactive: true.
  bool Unscale(const std::vector<torch::Tensor>& params);

 private:
  bool active_;
  double scale_;
  int64_t growth_interval_;
  int64_t good_steps_ = 0;
  int64_t skipped_ = 0;
};

}  // namespace quantd::train

#endif  // QUANTD_WORKER_TRAIN_LOSS_SCALER_H_
