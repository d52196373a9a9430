// A LinearLayer that runs, in order: an optional online Hadamard transform of its input (R4
// before down_proj), input fake quantization (ActQuantizer), and x·Wᵀ with a weight that may
// itself be fake-quantized. Rotation installs it (with the Hadamard, no quantization);
// quantization then fills in the quantizers. Not thread-safe.
#ifndef QUANTD_WORKER_QUANT_QUANT_LINEAR_H_
#define QUANTD_WORKER_QUANT_QUANT_LINEAR_H_

#include <torch/torch.h>

#include <optional>
#include <vector>

#include "kernels/hadamard.h"
#include "worker/model/modules.h"
#include "worker/quant/quantizers.h"

namespace quantd::quant {

class QuantLinear : public model::LinearLayer {
 public:
  explicit QuantLinear(torch::Tensor weight) : weight(std::move(weight)) {}

  torch::Tensor Forward(const torch::Tensor& x) override;
  int64_t in_features() const override { return weight.size(1); }
  int64_t out_features() const override { return weight.size(0); }
  std::vector<torch::Tensor*> StateTensors() override;

  // While true, Forward() feeds its (transformed) input to input_quantizer.Observe() and
  // does not quantize it.
  bool calibrating = false;

  torch::Tensor weight;  // [out, in]; already multiplied by the Hadamard when one is set
  // How `weight` was fake-quantized (bits 16: it was not) and its fp32 scales ([out, 1] or
  // [out, in / group_size], QuantizeWeightWithScales), for export.
  WeightQuantSettings weight_quant;
  torch::Tensor weight_scales;
  std::optional<kernels::HadamardFactors> input_hadamard;  // orthonormal transform of x
  ActQuantizer input_quantizer;

 private:
  // The matrix kernels::OnlineHadamard keeps for input_hadamard (dense, or the base), made on
  // first use.
  torch::Tensor hadamard_matrix_;
};

}  // namespace quantd::quant

#endif  // QUANTD_WORKER_QUANT_QUANT_LINEAR_H_
