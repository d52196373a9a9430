// Computational-invariance rotation of a loaded Llama (QuaRot/SpinQuant placement, DESIGN.md
// §3.3), in place:
//  * RMSNorm weights are folded into the linears that read the normed stream (q/k/v, up/gate,
//    lm_head) and set to ones;
//  * R1, an orthogonal d×d matrix (random-sign Hadamard, or a seeded random orthogonal matrix
//    for mode kRandom), rotates the residual stream: embeddings and o/down outputs by R1,
//    q/k/v/up/gate/lm_head inputs by R1ᵀ (a tied lm_head becomes its own tensor);
//  * R2, a Hadamard over head_dim, rotates v_proj's output heads and o_proj's input heads;
//  * R4 (down_online_had): down_proj becomes a QuantLinear whose input is transformed online by
//    the (orthonormal) Hadamard of the intermediate size, its weight multiplied to match;
//  * R3 (qk_online_had): every block gets a KvTransform applying a head_dim Hadamard to q and k
//    after RoPE.
// The full-precision outputs are unchanged up to float rounding. Weights are transformed in
// float64 and cast back to the model dtype.
// Errors: FAILED_PRECONDITION when the model was already rotated or quantized (its linears are
// not the checkpoint's DenseLinear) or a linear has a bias; INTERNAL for a LibTorch failure.
#ifndef QUANTD_WORKER_QUANT_ROTATION_H_
#define QUANTD_WORKER_QUANT_ROTATION_H_

#include <torch/torch.h>

#include <cstdint>

#include "absl/status/status.h"
#include "worker/model/llama.h"

namespace quantd::quant {

struct RotationOptions {
  enum class Mode { kHadamard, kRandom };
  Mode mode = Mode::kHadamard;
  uint64_t seed = 0;  // random signs (kHadamard) or the random matrix (kRandom)
  bool down_online_had = false;
  bool qk_online_had = false;
};

absl::Status RotateModel(model::LlamaModel& model, const RotationOptions& options);

// R1 as a [d, d] float64 matrix with R·Rᵀ = I (exposed for tests).
torch::Tensor ResidualRotation(int64_t d, const RotationOptions& options);

}  // namespace quantd::quant

#endif  // QUANTD_WORKER_QUANT_ROTATION_H_
