// The attention K/V path of a rotated and quantized block (model::AttentionTransform): an
// optional online Hadamard (R3) on every head of q and k after RoPE, then fake quantization of
// k (after RoPE and R3) and v. Only the new tokens pass through it, so a prefix KV cache
// built while `quantize` is false stays in full precision. Not thread-safe.
#ifndef QUANTD_WORKER_QUANT_KV_TRANSFORM_H_
#define QUANTD_WORKER_QUANT_KV_TRANSFORM_H_

#include <torch/torch.h>

#include <optional>
#include <vector>

#include "kernels/hadamard.h"
#include "worker/model/modules.h"
#include "worker/quant/quantizers.h"

namespace quantd::quant {

class KvTransform : public model::AttentionTransform {
 public:
  void Apply(int layer, torch::Tensor* q, torch::Tensor* k, torch::Tensor* v) override;
  std::vector<torch::Tensor*> StateTensors() override;

  std::optional<kernels::HadamardFactors> qk_hadamard;  // over head_dim
  ActQuantizer k_quantizer;
  ActQuantizer v_quantizer;
  // Off: no quantization (prefix KV building). Calibrating: static quantizers observe.
  bool quantize = true;
  bool calibrating = false;
};

}  // namespace quantd::quant

#endif  // QUANTD_WORKER_QUANT_KV_TRANSFORM_H_
