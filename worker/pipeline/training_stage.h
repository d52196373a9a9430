// The job's quantized model when it trains (DESIGN.md §3 steps 5 and 8): a trainable prefix
// (prefix.trainable) and/or block-wise fine-tuning (training.epochs > 0). RunJob calls this in
// place of BuildVariant for its own ("quantized") variant.
//
// Steps, on fresh copies of the checkpoint:
//  1. load, fingerprint (spec + model + calibration windows, for checkpoints), rotate as the plan
//  says (PHASE_ROTATE);
//  2. prefix training (PHASE_TRAIN_PREFIX) on the rotated full-precision model: P = prefix.len
//     (0: the detected prefix's length) embeddings initialised from the detected prefix, the
//     composite loss of worker/train/prefix_loss.h at prefix.loss_site of prefix.target_layers,
//     batches of training.batch_size windows; a loss point per step and a "val" point per epoch.
//     prefix.mode DISCRETE builds the KV cache from the nearest vocabulary tokens (cosine),
//     CONTINUOUS from the trained embeddings themselves (then BOS is never dropped from a
//     window that starts with it: the prefix is not a token sequence that ends in BOS);
//     without a trainable prefix, the plan's (detected) prefix builds it
//     (PHASE_BUILD_PREFIX_CACHE);
//  3. a twin of the rotated model is quantized and calibrated after that prefix (PHASE_CALIBRATE):
//     without fine-tuning it is the result;
//  4. fine-tuning (PHASE_FINETUNE): the twin is first evaluated through `evaluate_untuned`
//     (RunJob reports it as "ppl/<dataset>/quantized_before_finetune"), then every block of the
//     full-precision model is replaced by its trainable quantized form (finetune_installer.h)
//     and trained against the full-precision block's outputs, the prefix KV as context; a loss
//     point per training.loss_every_steps steps and a "val" point per epoch and block; the
//     trained blocks then become plain quant::QuantLinear modules (ToQuantLinears), as in the
//     twin, so the result exports like an untrained one.
// Checkpoints (checkpoint_dir non-empty): the trained prefix after step 2 and every finished
// block during step 4, tagged with the fingerprint, so that a rerun with the same spec, model,
// calibration data and folder (a requeued job) reuses the prefix and resumes at the next unfinished
// block (log line and metric "finetune/resumed_at_block"); a checkpoint of another fingerprint is
// ignored. Metrics: prefix/{len,initial_loss,best_loss,best_epoch,steps,nearest_cosine_min},
// prefix/max_down_proj_input/{detected,trained} (largest |x| at any down_proj input over up to 4
// validation windows after each prefix, on the rotated fp model: what outlier detection measures),
// finetune/block<i>/{initial_val_loss,final_val_loss,kept_epoch} (kept_epoch: the epoch whose
// state the block keeps, the one with the lowest val loss; -1 for the untrained state),
// finetune/{final_val_loss,steps,resumed_at_block,peak_training_bytes,peak_rss_bytes}.
// Errors: CANCELLED (checked between steps), train::NumericalFailure (RunJob: NUMERICAL), the
// loading, rotation, quantization and training errors otherwise.
#ifndef QUANTD_WORKER_PIPELINE_TRAINING_STAGE_H_
#define QUANTD_WORKER_PIPELINE_TRAINING_STAGE_H_

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "quantd/v1/job.pb.h"
#include "worker/model/llama.h"
#include "worker/model/tokenizer.h"
#include "worker/pipeline/quantized_variant.h"
#include "worker/runner/job_context.h"

namespace quantd::pipeline {

// True when the spec asks for prefix training or block fine-tuning.
bool SpecTrains(const v1::JobSpec& spec);

struct TrainingInputs {
  const v1::JobSpec* spec = nullptr;  // defaults applied and validated
  std::string model_dir;
  model::LoadOptions load;
  const model::Tokenizer* tokenizer = nullptr;
  int32_t bos_id = -1;
  const std::vector<std::vector<int32_t>>* train = nullptr;  // calibration windows
  const std::vector<std::vector<int32_t>>* val = nullptr;
  VariantPlan plan;            // the job's own plan: rotation, detected prefix, quantizers
  std::string checkpoint_dir;  // empty: no checkpoints
};

struct TrainingHooks {
  EventSink* sink = nullptr;
  CancellationToken* cancel = nullptr;
  double progress_start = 0.0;  // fractions of the whole job this stage spans
  double progress_end = 1.0;
  std::function<void(const std::string&, double)> metric;
  // Evaluates the calibrated twin before fine-tuning, reporting progress in [start, end].
  std::function<absl::Status(model::LlamaModel&, const quant::PrefixCache*, double start,
                             double end)>
      evaluate_untuned;
};

struct TrainedVariant {
  VariantModel variant;
  bool prefix_trained = false;
  std::vector<int32_t> prefix_ids;  // the prefix's tokens (continuous: the nearest ones)
  std::string prefix_text;          // the same as text, "[BOS]" for BOS
  torch::Tensor prefix_embeddings;  // [P, hidden] when the continuous embeddings built the cache
};

absl::StatusOr<TrainedVariant> BuildTrainedVariant(const TrainingInputs& inputs,
                                                   const TrainingHooks& hooks);

}  // namespace quantd::pipeline

#endif  // QUANTD_WORKER_PIPELINE_TRAINING_STAGE_H_
