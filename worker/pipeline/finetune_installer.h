// The bridge between block-wise fine-tuning (worker/train) and the quantized modules of
// worker/quant, used by the job to fine-tune its quantized model.
//
// FromQuantLinear reads a quant::QuantLinear as an SteLinear source: its weight (full precision
// as long as QuantizeModel has not run on it, e.g. rotation's down_proj), its online Hadamard
// (R4) and, when static and calibrated, its per-tensor input scale.
//
// MakeCalibratedBlockInstaller fine-tunes a full-precision (rotated) model into the quantized
// form of `calibrated`, a twin of it (same checkpoint, same rotation) that went through
// QuantizeModel and CalibrateStatic. Installing block l:
//   * every projection becomes an SteLinear made from the full-precision layer (weight and
//     online Hadamard), with weight quantization from `options` and, for static input
//     quantization, the twin's calibrated per-tensor input scale as the initial learnable scale;
//   * the block's attention_transform becomes the twin's KvTransform (R3 and the calibrated
//     K/V quantizers; shared and not trained themselves, but the gradient passes straight
//     through them to k_proj and v_proj).
// `calibrated` must outlive the installer's use; it is not changed.
#ifndef QUANTD_WORKER_PIPELINE_FINETUNE_INSTALLER_H_
#define QUANTD_WORKER_PIPELINE_FINETUNE_INSTALLER_H_

#include <optional>

#include "absl/status/status.h"
#include "worker/model/llama.h"
#include "worker/quant/quantize_model.h"
#include "worker/train/ste_block.h"
#include "worker/train/trainable_block.h"

namespace quantd::pipeline {

// nullopt when `layer` is not a quant::QuantLinear.
std::optional<train::LinearSource> FromQuantLinear(const model::LinearLayer& layer);

// `options.adapt` is ignored (the installer reads the layers itself). Errors of the SteBlock
// installer, and FAILED_PRECONDITION when `calibrated` has another block count or a projection
// of the twin is not a QuantLinear while static input quantization needs its scale.
train::BlockInstaller MakeCalibratedBlockInstaller(const model::LlamaModel& calibrated,
                                                   const train::SteBlockOptions& options);

// Replaces every finished (baked) train::SteLinear of `model` by the equivalent quant::QuantLinear:
// the baked weight with its learned scales (weight_quant = settings.weight), the online Hadamard,
// and the learned static input scale or dynamic clipping factor. A fine-tuned model then has the
// modules of a calibrated one (what export reads) and computes the same function.
// FAILED_PRECONDITION for an SteLinear that is not baked.
absl::Status ToQuantLinears(model::LlamaModel& model, const quant::QuantSettings& settings);

}  // namespace quantd::pipeline

#endif  // QUANTD_WORKER_PIPELINE_FINETUNE_INSTALLER_H_
