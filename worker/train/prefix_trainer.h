// Trainable prefix (DESIGN.md §3.5): P continuous embeddings prepended, as input embeddings,
// to every calibration window of the frozen model and trained so that the windows' residual
// stream carries fewer/smaller outliers (loss in prefix_loss.h).
//
// Initialisation, row by row: `init_token_ids` in order (the pipeline passes the detected
// prefix: outlier tokens, then BOS), then the most frequent tokens of the training windows not
// used yet (ties: smaller id), then N(0, σ²) rows from `seed` with σ the standard deviation of
// the embedding matrix. Training: AdamW over the prefix only (the model's tensors are never
// given to the optimiser and must not require grad), cosine decay per step from `lr`, batches
// of `batch_size` windows in a seeded order each epoch. Every step reports a "train" loss
// point (total, components, learning rate); every epoch a "val" point (mean total over the
// validation windows, or over the epoch's training steps when there are none). The embeddings
// with the lowest such epoch loss (the initial ones included) are returned. Only the blocks up
// to the last target layer run (nothing after it influences the loss). With float16 activations
// the loss is scaled for backward (loss_scaler.h).
//
// Each prefix row is then mapped to the vocabulary token of largest cosine similarity.
// Not thread-safe; uses the model exclusively while it runs.
#ifndef QUANTD_WORKER_TRAIN_PREFIX_TRAINER_H_
#define QUANTD_WORKER_TRAIN_PREFIX_TRAINER_H_

#include <torch/torch.h>

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "worker/model/llama.h"
#include "worker/model/tokenizer.h"
#include "worker/train/prefix_loss.h"
#include "worker/train/training.h"

namespace quantd::train {

struct PrefixTrainOptions {
  int64_t prefix_len = 8;  // P
  double lr = 1e-3;        // prefix_lr
  int epochs = 20;         // prefix_epochs
  int64_t batch_size = 4;
  double weight_decay = 0.0;       // AdamW decoupled weight decay (the magnitude loss regularises)
  std::vector<int> target_layers;  // empty: every layer
  // Where h_l is taken: the residual output of the block (DESIGN.md §3.5, default) or another
  // site of modules.h, e.g. kDownProjInput where outlier tokens are detected (§3.4).
  model::ActivationSite site = model::ActivationSite::kBlockOutput;
  std::vector<int32_t> init_token_ids;  // used first, in order
  uint64_t seed = 42;
  PrefixLossOptions loss;  // loss.threshold = outlier_threshold
  // Back-propagate one block at a time, running each block's forward again (about one more
  // forward per step): only one block's autograd graph, and with block streaming
  // (model/block_streaming.h) one streamed block's weights, is on the device at a time instead
  // of every block's. The same gradients up to floating-point summation order.
  bool blockwise_backward = false;
  const model::Tokenizer* tokenizer = nullptr;  // not owned; optional, for nearest_text
};

struct PrefixTrainResult {
  torch::Tensor embeddings;          // [P, hidden] in the model's dtype, best epoch's
  std::vector<int32_t> init_ids;     // the token behind each initial row (-1: random)
  std::vector<int32_t> nearest_ids;  // per row, by cosine similarity
  std::vector<double> nearest_cosine;
  std::vector<std::string> nearest_text;  // per row; empty without a tokenizer
  double initial_loss = 0.0;              // epoch loss of the initial embeddings
  double best_loss = 0.0;
  int best_epoch = -1;  // -1: the initial embeddings were best
  int64_t steps = 0;
};

// Errors: INVALID_ARGUMENT (no training window, windows of different lengths, P < 1, a target
// layer out of range, an id out of the vocabulary), CANCELLED, NumericalFailure when the
// initial embeddings' loss is not finite, INTERNAL with context for LibTorch failures. A NaN/Inf
// loss later stops training with the best embeddings so far and a warning through on_log.
absl::StatusOr<PrefixTrainResult> TrainPrefix(model::LlamaModel& model,
                                              const std::vector<std::vector<int32_t>>& train,
                                              const std::vector<std::vector<int32_t>>& val,
                                              const PrefixTrainOptions& options,
                                              const TrainCallbacks& callbacks = {});

// The activations at `site` of layers `layers` (empty: all) for `windows` after
// `prefix_embeds` ([P, hidden] or undefined: no prefix), restricted to the non-prefix positions,
// without autograd; for measuring what a prefix does (max |h| etc.). Throws on LibTorch errors.
std::vector<torch::Tensor> NonPrefixActivations(
    model::LlamaModel& model, const torch::Tensor& prefix_embeds,
    const std::vector<std::vector<int32_t>>& windows, const std::vector<int>& layers = {},
    model::ActivationSite site = model::ActivationSite::kBlockOutput);

// Per row of `embeds` [P, hidden], the token of `embedding_matrix` [vocab, hidden] with the
// largest cosine similarity, and that similarity.
void NearestTokens(const torch::Tensor& embeds, const torch::Tensor& embedding_matrix,
                   std::vector<int32_t>* ids, std::vector<double>* cosine);

}  // namespace quantd::train

#endif  // QUANTD_WORKER_TRAIN_PREFIX_TRAINER_H_
