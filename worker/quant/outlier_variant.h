// Derives from a small Llama (stories260K) a variant with planted token-wise outliers, for tests
// and benchmarks of outlier handling: at every marker token (default "." and ",") that has no
// BOS before it in its context — like a delimiter that becomes an attention sink when the real
// sink is missing — the down_proj input of every layer carries a massive activation (about
// `target_ratio` times that layer's median per-token max). Its perplexity stays within a few
// percent of the original's (only the rms of marker and BOS tokens changes, slightly). A prefix
// ending in BOS (PrefixQuant's) removes every outlier.
//
// How (all extra parameters are zero-padded additions; nothing of the original is changed):
//  * the residual stream gets 3 extra dimensions: a marker flag m and a BOS flag b (embedding
//    entries κ, the mean residual rms at the markers, for those tokens; 0 otherwise) and a
//    detector d; RMSNorm weights of the original dimensions are scaled by sqrt(d_orig / d_new)
//    so that the normed values of every other token are unchanged;
//  * layer 0 gets one extra KV head (and its query heads). Query = m and key = b on the lowest
//    RoPE frequency pair, scaled so that a marker attends to any BOS up to ~1000 positions back
//    with a score above 15 (others score 0); its value is b, which o_proj writes into d:
//    d ≈ 1 when a BOS precedes the marker, ≈ 0 otherwise. The margins are wide (no cancelling
//    terms) and the flags are of the size of the residual stream (norm weights near 1), so the
//    mechanism survives 4-bit weights and KV caches;
//  * every layer's MLP gets one extra neuron, gate = G·(m − 2d), up = U·m, with a zero down_proj
//    column: silu(gate)·up is massive only at markers without a BOS before them, and never
//    reaches the residual stream in full precision (with an online Hadamard before down_proj and
//    quantized weights it does, as real outliers do). Norm weights on m and d are calibrated on
//    `calibration_text` so that the normed flags are about 1 at the markers, and U so that the
//    ratio is about `target_ratio`.
// The intermediate size becomes a multiple of 4 and the hidden size a multiple of 4 and of the
// head count (for Hadamard rotations).
// Known limit: G and U are large, so quantization noise on the flags can wake the planted neuron
// at ordinary tokens too. After W4A4KV4 with a [BOS]-ending prefix, the last block's planted
// activation reached 60 to 1250 at the tokens with the largest output errors (median 0.001), and
// those few tokens dominate that block's MSE, which then moves by up to 2x with last-bit changes
// of the matmuls (tests/pipeline/training_test.cc).
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
