// Symmetric uniform fake quantizers for weights, activations and the KV cache (DESIGN.md §3.7),
// on top of kernels/fake_quant_torch.h. A bit width of 16 (or more) means "not quantized".
//
// ActQuantizer is the stateful part: a static quantizer first observes calibration inputs
// (Observe), then Finalize() turns the observed max|x| into its scales. Not thread-safe.
#ifndef QUANTD_WORKER_QUANT_QUANTIZERS_H_
#define QUANTD_WORKER_QUANT_QUANTIZERS_H_

#include <torch/torch.h>

#include <cstdint>
#include <vector>

#include "absl/status/statusor.h"

namespace quantd::quant {

inline bool QuantEnabled(int bits) { return bits > 0 && bits < 16; }

struct WeightQuantSettings {
  int bits = 16;
  int64_t group_size = -1;  // -1: one scale per output channel
  bool mse_init = false;    // shrink-factor grid search instead of min-max scales
};

// Fake-quantized copy of weight [out, in] (fp32 arithmetic, weight's dtype). Returns the weight
// itself when bits = 16. INVALID_ARGUMENT when the group size does not divide `in`.
absl::StatusOr<torch::Tensor> QuantizeWeight(const torch::Tensor& weight,
                                             const WeightQuantSettings& settings);

struct QuantizedWeight {
  torch::Tensor values;  // the fake-quantized weight (as QuantizeWeight returns it)
  // fp32 scales, [out, 1] (per channel) or [out, in / group_size]; undefined when bits = 16.
  // values = (scales · q).to(weight dtype) for integers q on the grid of `bits`.
  torch::Tensor scales;
};

// QuantizeWeight, also returning the scales (what an export stores next to the integers).
absl::StatusOr<QuantizedWeight> QuantizeWeightWithScales(const torch::Tensor& weight,
                                                         const WeightQuantSettings& settings);

// Quantizer of a tensor whose last dimension is split in groups of `group_size` (0: the whole
// last dimension is one group). Modes:
//  * dynamic: scales from each row's (token's) groups at run time, times `clip_ratio`;
//  * static: one scale per tensor (group_size 0, activations) or per `static_shape` element
//    (KV: [1, heads, 1, groups]), calibrated as max|x| / QuantMax over the observed inputs.
class ActQuantizer {
 public:
  ActQuantizer() = default;
  ActQuantizer(int bits, bool dynamic, int64_t group_size, float clip_ratio = 1.0f)
      : bits_(bits), dynamic_(dynamic), group_size_(group_size), clip_ratio_(clip_ratio) {}

  bool enabled() const { return QuantEnabled(bits_) && active_; }
  bool is_static() const { return QuantEnabled(bits_) && !dynamic_; }
  int bits() const { return bits_; }
  bool dynamic() const { return dynamic_; }
  int64_t group_size() const { return group_size_; }
  float clip_ratio() const { return clip_ratio_; }
  // Disables quantization while true (the quantizer passes inputs through).
  void set_active(bool active) { active_ = active; }

  // Static calibration: records max|x| per static scale (the running max over calls).
  void Observe(const torch::Tensor& x);
  // Sets the static scales from what was observed. FAILED_PRECONDITION when nothing was.
  absl::Status Finalize();
  bool calibrated() const { return scales_.defined(); }
  // Restores static scales calibrated earlier (an export being loaded): fp32, the shape
  // Finalize() gives ([] per tensor, [1, heads, 1, groups] for KV).
  void set_scales(torch::Tensor scales) { scales_ = std::move(scales); }
  const torch::Tensor& scales() const { return scales_; }

  // Fake-quantized x (x itself when disabled). Throws on LibTorch errors (call sites inside a
  // forward pass). A static quantizer must be calibrated first. When autograd records and x
  // requires grad, the straight-through form is used: the gradient reaches x (not the scales,
  // which stay fixed); otherwise the kernels run and the result has no autograd history.
  torch::Tensor Apply(const torch::Tensor& x) const;

  // Its tensor members (model::LinearLayer::StateTensors).
  std::vector<torch::Tensor*> StateTensors() { return {&observed_max_, &scales_}; }

 private:
  torch::Tensor GroupAbsMax(const torch::Tensor& x) const;

  int bits_ = 16;
  bool dynamic_ = true;
  int64_t group_size_ = 0;
  float clip_ratio_ = 1.0f;
  bool active_ = true;
  torch::Tensor observed_max_;  // per static scale, fp32
  torch::Tensor scales_;
};

}  // namespace quantd::quant

#endif  // QUANTD_WORKER_QUANT_QUANTIZERS_H_
