// LibTorch entry points of symmetric fake quantization (library quantd_kernels_torch).
//
// Grid, rounding and scale rules are those of kernels/fake_quant.h. x has shape [..., cols];
// every leading index is a row (a token, or an output channel of a weight). Scale tensors are
// fp32 with the shape that broadcasts over the layout:
//   kPerTensor: []   kPerToken: [..., 1]   kPerGroup: [..., cols / group_size]
// Results keep x's dtype and device (fp32 arithmetic). CPU tensors use the kernels/fake_quant.h
// loops, split across ATen's intra-op threads; CUDA tensors use the CUDA twins when this build
// has them and the device's default stream is current; otherwise torch ops with the same
// formula. Errors: InvalidArgument for a bad config, shape or dtype; Internal for a failed
// CUDA launch.
#ifndef QUANTD_KERNELS_FAKE_QUANT_TORCH_H_
#define QUANTD_KERNELS_FAKE_QUANT_TORCH_H_

#include <torch/torch.h>

#include "absl/status/statusor.h"
#include "kernels/fake_quant.h"

namespace quantd::kernels {

struct FakeQuantOutput {
  torch::Tensor values;  // x̂, x's shape and dtype
  torch::Tensor scales;  // fp32, layout shape above
};

// Dynamic scales s = clip_ratio · max|x| / QuantMax per segment. Not differentiable.
absl::StatusOr<FakeQuantOutput> FakeQuantizeDynamic(const torch::Tensor& x,
                                                    const FakeQuantConfig& config,
                                                    float clip_ratio = 1.0f);

// Given (static or calibrated) scales, broadcastable to the layout shape. Not differentiable.
absl::StatusOr<torch::Tensor> FakeQuantizeStatic(const torch::Tensor& x,
                                                 const FakeQuantConfig& config,
                                                 const torch::Tensor& scales);

// Straight-through-estimator form for training, from torch ops (any device):
//   x̂ = s · clamp(v + (round(v) - v).detach(), QuantMin, QuantMax), v = x / s.
// Gradients reach x (1 inside the range, 0 where clamped) and `scales` when it requires grad
// (learnable scales, LSQ-style).
absl::StatusOr<torch::Tensor> FakeQuantizeSte(const torch::Tensor& x, const FakeQuantConfig& config,
                                              const torch::Tensor& scales);

// Dynamic STE form: scales = clip_ratio · max|x| / QuantMax (clip_ratio a tensor broadcastable
// to the layout shape, e.g. a learnable activation clipping factor; a zero max gives s = 1),
// then FakeQuantizeSte. Returns x̂ and the scales, both in the autograd graph.
absl::StatusOr<FakeQuantOutput> FakeQuantizeDynamicSte(const torch::Tensor& x,
                                                       const FakeQuantConfig& config,
                                                       const torch::Tensor& clip_ratio);

// The integer grid values clamp(round(x / s), QuantMin, QuantMax) as an int8 CPU tensor of x's
// shape (bits ≤ 8), for export and int4 packing (kernels/int4_pack.h); values · scales gives
// FakeQuantizeStatic's result up to the rounding of x's dtype.
absl::StatusOr<torch::Tensor> QuantizeInt8(const torch::Tensor& x, const FakeQuantConfig& config,
                                           const torch::Tensor& scales);

// `mse_init`: the per-segment shrink search of kernels/fake_quant.h; returns the scales (layout
// shape, on x's device). CPU tensors run the CPU kernel; tensors on another device run
// MseSearchScalesTorchOps there (a Llama-2-7B layer has 45 M weights: the CPU search over the
// 80 candidates costs seconds per layer, plus the copy).
absl::StatusOr<torch::Tensor> MseSearchScales(const torch::Tensor& x, const FakeQuantConfig& config,
                                              const ShrinkSearch& search = ShrinkSearch{});

// The same search from plain torch ops on x's device, whole segments in chunks of at most
// `chunk_elements` (bounding the temporaries). The candidates, the scale formula and the
// first-minimum rule are the kernel's, but the error sums add up in another order, so where two
// candidates' errors tie to the last bits the other one may win: the chosen scale's error is
// the kernel's minimum to fp32 rounding.
absl::StatusOr<torch::Tensor> MseSearchScalesTorchOps(const torch::Tensor& x,
                                                      const FakeQuantConfig& config,
                                                      const ShrinkSearch& search = ShrinkSearch{},
                                                      int64_t chunk_elements = int64_t{1} << 26);

}  // namespace quantd::kernels

#endif  // QUANTD_KERNELS_FAKE_QUANT_TORCH_H_
