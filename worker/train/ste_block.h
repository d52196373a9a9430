// A TrainableBlock made from kernels' straight-through-estimator fake quantization: every
// projection of the block becomes an SteLinear with
//  * a weight fake-quantized per output channel (group_size -1) or per group, with learnable
//    scales (LSQ-style) initialised from min-max or, with mse_init, the shrink search;
//  * optionally, input fake quantization (input_bits < 16): dynamic per token with a clipping
//    factor (init `activation_clip`; learnable only with `learn_activation_clip`, the job's
//    quant.activation_clipping), or static per tensor with a learnable scale
//    initialised from the replaced layer's calibrated scale (LinearSource::static_input_scale);
//  * the replaced layer's online input Hadamard (rotation's R4), when it has one, kept as is.
// What a replaced layer holds is read by `SteBlockOptions::adapt` (the pipeline passes one that
// understands quant::QuantLinear); without it, or when it returns nullopt, the layer must be a
// model::DenseLinear without bias. The block's attention_transform (K/V path) is left untouched
// and its own state is not trained; its quantizers pass the gradient straight through to
// k_proj and v_proj (quant::ActQuantizer::Apply).
// Precision: the trainable weight is an fp32 master copy whatever the model's compute dtype, so
// that AdamW steps of weight_lr (5e-6) are not rounded away in bf16/fp16 weights; the quantized
// weight is cast to the input's dtype for the matmul, and baked in the original dtype.
// Finish() bakes the quantized weight into a plain tensor. Not thread-safe.
#ifndef QUANTD_WORKER_TRAIN_STE_BLOCK_H_
#define QUANTD_WORKER_TRAIN_STE_BLOCK_H_

#include <torch/torch.h>

#include <cstdint>
#include <functional>
#include <optional>
#include <vector>

#include "kernels/fake_quant.h"
#include "kernels/hadamard.h"
#include "worker/model/modules.h"
#include "worker/train/trainable_block.h"

namespace quantd::train {

// What an SteLinear needs from the layer it replaces.
struct LinearSource {
  torch::Tensor weight;  // [out, in] full precision (already rotated; copied, not modified)
  std::optional<kernels::HadamardFactors> input_hadamard;
  torch::Tensor static_input_scale;  // calibrated per-tensor input scale, or undefined
};

struct SteBlockOptions {
  int wbits = 4;
  int64_t w_group_size = -1;  // -1: per output channel
  bool mse_init = false;
  int input_bits = 16;  // >= 16: inputs not quantized
  bool input_dynamic = true;
  float activation_clip = 1.0f;
  bool learn_activation_clip = true;  // dynamic inputs: train the clipping factor (quant_lr)
  // Reads layers that are not DenseLinear; nullopt: not understood.
  std::function<std::optional<LinearSource>(const model::LinearLayer&)> adapt;
};

class SteLinear : public model::LinearLayer {
 public:
  torch::Tensor Forward(const torch::Tensor& x) override;
  int64_t in_features() const override { return weight.size(1); }
  int64_t out_features() const override { return weight.size(0); }
  std::vector<torch::Tensor*> StateTensors() override {
    return {&weight, &weight_scales, &input_scale, &baked, &hadamard_matrix_};
  }
  // Bakes the quantized weight; Forward() no longer builds an autograd graph for it.
  void Bake();

  // [out, in] fp32 master (trainable when weight_lr > 0); after Bake(), the baked weight.
  torch::Tensor weight;
  torch::ScalarType weight_dtype = torch::kFloat32;  // the replaced layer's; Bake() returns to it
  torch::Tensor weight_scales;  // [out, 1] or [out, in / group] fp32, trainable
  kernels::FakeQuantConfig weight_config;
  torch::Tensor input_scale;  // static: [] fp32 scale; dynamic: [] clipping factor
  kernels::FakeQuantConfig input_config;
  bool quantize_input = false;
  bool input_dynamic = true;
  bool learn_input_clip = true;  // dynamic: input_scale is a QuantParameter
  std::optional<kernels::HadamardFactors> input_hadamard;
  torch::Tensor baked;  // defined after Bake()

 private:
  // The matrix kernels::OnlineHadamard keeps for input_hadamard (dense, or the base), made on
  // first use.
  torch::Tensor hadamard_matrix_;
};

// INVALID_ARGUMENT for a group size that does not divide a layer or an unsupported layer;
// FAILED_PRECONDITION for static input quantization without a calibrated scale.
BlockInstaller MakeSteBlockInstaller(const SteBlockOptions& options);

}  // namespace quantd::train

#endif  // QUANTD_WORKER_TRAIN_STE_BLOCK_H_
