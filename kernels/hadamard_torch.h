// LibTorch entry points of the Hadamard transform (library quantd_kernels_torch).
//
// Row-vector convention: for x of shape [..., n] the result is s · x·Mᵀ (s · x·M with
// `transpose`), M from HadamardFactors (M·Mᵀ = n·I), s = 1/sqrt(n) when `orthonormal`, else 1;
// i.e. every last-dim vector v becomes s·M·v (kernels/fwht.h). Results keep x's dtype and
// device; the arithmetic is fp32 (bf16/fp16 inputs are widened, the result rounded once).
// Differentiable w.r.t. x: the backward pass applies the transposed transform.
// CPU tensors use the kernels/fwht.h loops with rows split across ATen's intra-op threads; CUDA
// tensors use the CUDA twin (n ≤ 32768) when this build has it and the device's default stream
// is current; everything else uses HadamardTransformTorchOps. Errors: InvalidArgument for a last
// dim ≠ factors.n or an unsupported dtype; Internal for a failed CUDA launch. Thread-safe;
// `factors` is copied where the backward pass needs it.
#ifndef QUANTD_KERNELS_HADAMARD_TORCH_H_
#define QUANTD_KERNELS_HADAMARD_TORCH_H_

#include <torch/torch.h>

#include "absl/status/statusor.h"
#include "kernels/hadamard.h"

namespace quantd::kernels {

absl::StatusOr<torch::Tensor> HadamardTransform(const torch::Tensor& x,
                                                const HadamardFactors& factors, bool orthonormal,
                                                bool transpose = false);

// The same transform from plain torch ops — the Sylvester part as a Kronecker product of dense
// factors of order ≤ 128 (one batched matmul each), then one k×k matmul — for any device,
// differentiable by autograd. Same contract as above.
absl::StatusOr<torch::Tensor> HadamardTransformTorchOps(const torch::Tensor& x,
                                                        const HadamardFactors& factors,
                                                        bool orthonormal, bool transpose = false);

// s·M as a dense [n, n] fp32 CPU tensor (for offline weight rotation and references).
torch::Tensor HadamardMatrix(const HadamardFactors& factors, bool orthonormal);

// The orthonormal transform as two passes, for M = B ⊗ H_p (k = base order > 1, p = 2^m): the
// FWHT of each of the k chunks of p elements, scaled by 1/sqrt(n) in fp32 and rounded to x's
// dtype, then one batched [k, k] x [k, p] matmul with B in x's dtype (on a GPU: cuBLAS, on
// tensor cores for 16-bit x). So 16-bit results are rounded twice, not once as in
// HadamardTransform. B is converted on first use and kept in `*base_cache` (remade when its
// order, device or dtype differs). Non-transposed only; differentiable w.r.t. x; errors as
// HadamardTransform. k = 1 is HadamardTransform.
absl::StatusOr<torch::Tensor> HadamardTransformSplit(const torch::Tensor& x,
                                                     const HadamardFactors& factors,
                                                     torch::Tensor* base_cache);

// The orthonormal transform of an online rotation (R3/R4: the input of a layer, at run time),
// on the fastest path for the size, device and dtype:
//   - a non-power-of-two base and n ≤ 2048 (e.g. 172 = H_172): one matmul with the dense
//     matrix, much faster there than the base-mixing loop;
//   - a larger n with a base of order ≥ 64 (e.g. 11008 = H_172 ⊗ H_64) on CUDA, or in bf16 on
//     the CPU: HadamardTransformSplit (16-bit x needs a ±1 base);
//   - everything else: HadamardTransform.
// The matrix a path needs (dense or base) is made on first use and kept in `*matrix_cache` in
// x's dtype (remade when x's device or dtype changes, never converted per call). Inference
// (quant::QuantLinear) and fine-tuning (train::SteLinear) both call this, so a fine-tuned layer
// converts to exactly the function it was trained as: the implementations differ in the last
// bits, and 4-bit activations turn that into 0.1–1 % of perplexity. Differentiable w.r.t. x;
// errors as HadamardTransform.
absl::StatusOr<torch::Tensor> OnlineHadamard(const torch::Tensor& x, const HadamardFactors& factors,
                                             torch::Tensor* matrix_cache);

}  // namespace quantd::kernels

#endif  // QUANTD_KERNELS_HADAMARD_TORCH_H_
