// Training checkpoints under a job's work directory, tagged with a fingerprint of the job spec
// and the model so that a requeued job resumes only its own work.
//   <dir>/prefix.pt    the trainable prefix's result (after the prefix phase)
//   <dir>/finetune.pt  every finished block's TrainableBlock::State() (after every block)
// Files are written to a temporary name and renamed, so a crash never leaves a torn file.
// Saving never throws or aborts: a failed write (a full disk) is RESOURCE_EXHAUSTED for ENOSPC
// or EDQUOT, INTERNAL otherwise, naming the file and strerror; the temporary file is removed and
// an earlier checkpoint of that name is kept.
#ifndef QUANTD_WORKER_TRAIN_CHECKPOINT_H_
#define QUANTD_WORKER_TRAIN_CHECKPOINT_H_

#include <torch/torch.h>

#include <map>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "worker/model/llama.h"
#include "worker/train/prefix_trainer.h"

namespace quantd::train {

// Hex FNV-1a 64 of `spec_text` (e.g. the serialized job spec) and the model: its config sizes
// and the bytes of the embeddings, norms and every DenseLinear weight.
// Call it on the loaded model before rotation or quantization. Throws on LibTorch errors.
std::string Fingerprint(const std::string& spec_text, const model::LlamaModel& model);

absl::Status SavePrefixCheckpoint(const std::string& dir, const std::string& fingerprint,
                                  const PrefixTrainResult& result);
// nullopt when there is no checkpoint or its fingerprint differs (then `on_log` says so), and
// for an unreadable file, which is renamed to <file>.unreadable with an `on_log` warning (a
// checkpoint only saves work; a damaged one must not stop the job).
absl::StatusOr<std::optional<PrefixTrainResult>> LoadPrefixCheckpoint(
    const std::string& dir, const std::string& fingerprint,
    const std::function<void(const std::string&)>& on_log = {});

// Fine-tuning state (used by FinetuneBlocks).
struct FinetuneCheckpoint {
  std::string fingerprint;
  int next_block = 0;
  // Per finished block: State() by name, and {initial, final val loss, steps, rolled back,
  // kept epoch, last finite epoch} (files written before the best state was kept have 4).
  std::vector<std::map<std::string, torch::Tensor>> block_states;
  std::vector<std::vector<double>> block_stats;
};
absl::Status SaveFinetuneCheckpoint(const std::string& dir, const FinetuneCheckpoint& checkpoint);
absl::StatusOr<std::optional<FinetuneCheckpoint>> LoadFinetuneCheckpoint(
    const std::string& dir, const std::string& fingerprint,
    const std::function<void(const std::string&)>& on_log = {});

}  // namespace quantd::train

#endif  // QUANTD_WORKER_TRAIN_CHECKPOINT_H_
