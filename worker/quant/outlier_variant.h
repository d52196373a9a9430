// Derives from a small Llama (stories260K) a variant with planted token-wise outliers, for tests
// and benchmarks of outlier handling: at the first occurrence in the context of each marker
// token (default "." and ","), the down_proj input of every layer carries a massive activation
// (about `target_ratio` times that layer's median per-token max), while the model's outputs stay
// those of the original up to float rounding.
//
// How (all extra parameters are zero-padded additions; nothing of the original is changed):
//  * the residual stream gets 2 extra dimensions per marker, a flag f (embedding entry κ for the
//    marker, 0 otherwise) and a detector d; RMSNorm weights of the original dimensions are scaled
//    by sqrt(d_orig / d_new) so their normed values are unchanged;
//  * layer 0 gets one extra KV head (and its two query heads) per marker. Its queries and keys
//    are the flag on the four RoPE frequency pairs with weights chosen so that a marker query
//    scores its own position strongly negative and every earlier marker (up to 512 positions
//    back) strongly positive; non-marker keys score 0. Its value is the flag, written by o_proj
//    into d: d ≈ 1 when an earlier marker exists, ≈ 0 at a marker's first occurrence;
//  * every layer's MLP gets one extra neuron per marker, gate = G·(f − 2d), up = U·f, and a zero
//    down_proj column: silu(gate)·up is massive at a first occurrence only, and never reaches the
//    residual stream. Norm weights on f and d are calibrated on `calibration_text` so that the
//    normed flag is about 1 at the markers, and U so that the ratio is about `target_ratio`.
// Like attention sinks in real LLMs, the outliers disappear once the markers sit in a prefix KV
// cache. The intermediate size becomes a multiple of 4 (for Hadamard rotations).
#ifndef QUANTD_WORKER_QUANT_OUTLIER_VARIANT_H_
#define QUANTD_WORKER_QUANT_OUTLIER_VARIANT_H_

#include <string>
#include <vector>

#include "absl/status/status.h"

namespace quantd::quant {

struct OutlierVariantOptions {
  std::vector<std::string> markers = {".", ","};  // tokens whose Decode() is exactly this
  std::string calibration_text;                   // text file; required
  double target_ratio = 256;
};

// Writes config.json, model.safetensors (fp32) and a copy of the tokenizer into `out_dir`
// (created). Errors: NOT_FOUND / INVALID_ARGUMENT for inputs (e.g. a marker not in the
// vocabulary, a model with biases or sliding windows), INTERNAL for I/O or LibTorch failures.
absl::Status WriteOutlierVariant(const std::string& model_dir, const std::string& out_dir,
                                 const OutlierVariantOptions& options);

}  // namespace quantd::quant

#endif  // QUANTD_WORKER_QUANT_OUTLIER_VARIANT_H_
