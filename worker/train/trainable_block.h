// The seam between block-wise fine-tuning and whatever quantized modules a job uses.
//
// A BlockInstaller replaces block `layer` of the model by its quantized form (swapping
// LlamaBlock's LinearLayers / attention_transform) and returns a TrainableBlock that exposes
// the new modules' trainable tensors. Fine-tuning then runs model.RunBlock(layer, ...) with
// those tensors requiring grad; the model's other tensors must not require grad.
#ifndef QUANTD_WORKER_TRAIN_TRAINABLE_BLOCK_H_
#define QUANTD_WORKER_TRAIN_TRAINABLE_BLOCK_H_

#include <torch/torch.h>

#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "worker/model/llama.h"

namespace quantd::train {

class TrainableBlock {
 public:
  virtual ~TrainableBlock() = default;
  // Leaf tensors trained with quant_lr (weight scales, activation scales / clipping factors).
  virtual std::vector<torch::Tensor> QuantParameters() = 0;
  // Leaf tensors trained with weight_lr (the weights), when weight_lr > 0.
  virtual std::vector<torch::Tensor> WeightParameters() = 0;
  // Every tensor that training may change, by a name stable across runs (the same names and
  // shapes for the same model and settings). These are the live tensors, not copies:
  // checkpoints save them and rollback copies values into them.
  virtual std::vector<std::pair<std::string, torch::Tensor>> State() = 0;
  // Training of this block is over: later forward passes need no autograd (e.g. bake the
  // quantized weights). State() must still describe the result.
  virtual void Finish() = 0;
};

// Installs the quantized form of block `layer`. Errors are the installer's (the fine-tuning
// run returns them unchanged).
using BlockInstaller =
    std::function<absl::StatusOr<std::unique_ptr<TrainableBlock>>(model::LlamaModel&, int)>;

}  // namespace quantd::train

#endif  // QUANTD_WORKER_TRAIN_TRAINABLE_BLOCK_H_
