// Block-wise fine-tuning (DESIGN.md §3.8). For each block l in order:
//   target  = the full-precision block l on full-precision inputs (cached from block l−1's
//             targets; the first inputs are the windows' embeddings);
//   input   = the outputs of the already-quantized blocks 0..l−1 (cached likewise);
//   install = `installer(model, l)` swaps in block l's quantized modules;
//   train   = MSE(block_l(input), target) over batches of `batch_size` windows in a seeded order
//             (seed + l), AdamW (quant_lr for QuantParameters, weight_lr for WeightParameters
//             when > 0), cosine decay per step over the block's steps.
// Every block runs after the optional prefix KV cache (batch 1, full precision, never trained):
// the windows' tokens sit at positions P, P+1, ... and attend to it. Only the current block's
// training state (its parameters, gradients and AdamW moments) exists at any time, beside the
// cached activations (FP inputs, quantized inputs, targets: 3 × windows × seqlen × hidden).
//
// Loss points: "train" every `log_every` steps (and the last), "val" after each epoch (MSE over
// the validation windows; over the training windows when there are none).
// Best state: each block keeps the state with the lowest validation loss among its initial state
// and the ends of its epochs (BlockReport::kept_epoch), so fine-tuning never leaves a block
// above its starting validation loss; when that is not the last epoch's state, on_log says so.
// Precision: float16 activations train with dynamic loss scaling (loss_scaler.h; a skipped step
// is logged); SteBlock keeps fp32 master weights (ste_block.h).
// Numerical safety: a non-finite training loss stops that block, restores its best finite
// state, reports a warning through on_log and goes on with the next block; more than
// `max_numerical_failures` such blocks (or a block whose restored state is still not finite)
// end the run with NumericalFailure (training.h).
// Checkpoints (checkpoint_dir non-empty): after every block, every finished block's State() is
// saved with `fingerprint`; a later run with the same fingerprint re-installs and restores those
// blocks, recomputes the cached activations (no training), and continues at the next block.
// A checkpoint with another fingerprint is ignored with an on_log line; one that cannot be saved
// (e.g. a full disk) is an on_log warning and the run goes on (a rerun then resumes earlier).
// Not thread-safe; uses the model exclusively while it runs.
#ifndef QUANTD_WORKER_TRAIN_FINETUNE_H_
#define QUANTD_WORKER_TRAIN_FINETUNE_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "worker/model/llama.h"
#include "worker/train/trainable_block.h"
#include "worker/train/training.h"

namespace quantd::train {

struct FinetuneOptions {
  int epochs = 10;
  double quant_lr = 5e-5;
  double weight_lr = 5e-6;  // 0: weights stay fixed
  int64_t batch_size = 1;
  int64_t log_every = 1;
  double weight_decay = 0.0;
  uint64_t seed = 42;
  int max_numerical_failures = 2;
  bool keep_best_state = true;  // false: every block keeps its last epoch's state (see above)
  std::string checkpoint_dir;   // empty: no checkpoints
  std::string fingerprint;      // of the job spec and model (checkpoint.h)
};

struct BlockReport {
  int block = 0;
  double initial_val_loss = 0.0;  // before training (quantized, untrained)
  double final_val_loss = 0.0;    // of the state it keeps (best epoch, or rollback)
  int64_t steps = 0;
  int kept_epoch = -1;           // the epoch whose end state the block keeps; -1: the initial one
  int last_epoch = -1;           // the last epoch that ended with a finite validation loss
  bool rolled_back = false;      // a NaN/Inf loss stopped it
  bool from_checkpoint = false;  // restored, not trained, in this run
};

struct FinetuneResult {
  std::vector<BlockReport> blocks;
  int resumed_at_block = 0;         // first block trained in this run
  int64_t peak_training_bytes = 0;  // cached activations + one block's parameters, grads, moments
  int64_t peak_rss_bytes = 0;       // process high-water mark (getrusage) at the end
};

// Errors: INVALID_ARGUMENT (no windows, unequal lengths, epochs < 0, batch_size < 1, a prefix
// with the wrong number of layers), the installer's errors, CANCELLED (checked before every
// step), NumericalFailure, INTERNAL with context for LibTorch failures.
absl::StatusOr<FinetuneResult> FinetuneBlocks(model::LlamaModel& model,
                                              const model::KvCache* prefix,
                                              const std::vector<std::vector<int32_t>>& train,
                                              const std::vector<std::vector<int32_t>>& val,
                                              const BlockInstaller& installer,
                                              const FinetuneOptions& options,
                                              const TrainCallbacks& callbacks = {});

}  // namespace quantd::train

#endif  // QUANTD_WORKER_TRAIN_FINETUNE_H_
