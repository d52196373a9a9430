// A safetensors checkpoint: one file, or the shards listed by model.safetensors.index.json.
//
// Open() maps every file and validates every header and the index up front, so later Load()
// calls fail only for the tensor asked for. Load() returns the tensor cast to the requested
// dtype; when no cast is needed and the bytes are suitably aligned the tensor aliases the
// mapped file (copy-on-write, the file never changes) instead of copying it. Tensors keep the
// mapping alive on their own, so they may outlive the Checkpoint. Aliasing tensors share
// memory: an in-place change to one is seen by a later Load() of the same tensor from the same
// Checkpoint (never by another Checkpoint or process).
// Thread-safe for concurrent Load() calls.
#ifndef QUANTD_WORKER_MODEL_CHECKPOINT_H_
#define QUANTD_WORKER_MODEL_CHECKPOINT_H_

#include <torch/torch.h>

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "worker/model/mapped_file.h"
#include "worker/model/safetensors_header.h"

namespace quantd::model {

class Checkpoint {
 public:
  // `path` is a model directory (holding model.safetensors.index.json or model.safetensors)
  // or a single .safetensors file. NOT_FOUND when no checkpoint is there; INVALID_ARGUMENT or
  // DATA_LOSS (naming the file, and the tensor where one is at fault) for a malformed header,
  // index, or shard, a shard missing a tensor the index lists, or a tensor in two shards.
  static absl::StatusOr<std::unique_ptr<Checkpoint>> Open(const std::string& path);

  bool Contains(const std::string& name) const;
  std::vector<std::string> TensorNames() const;  // sorted
  // The header entry of `name`; NOT_FOUND when absent.
  absl::StatusOr<SafetensorsEntry> Entry(const std::string& name) const;

  // Loads `name` as a CPU tensor of `dtype` (a floating type). NOT_FOUND when absent,
  // INVALID_ARGUMENT when the stored dtype is not F32/F16/BF16 or, with `expected_shape`,
  // when the shape differs. Errors name the file and the tensor.
  absl::StatusOr<torch::Tensor> Load(const std::string& name, torch::ScalarType dtype) const;
  absl::StatusOr<torch::Tensor> Load(const std::string& name, torch::ScalarType dtype,
                                     const std::vector<int64_t>& expected_shape) const;

  // Loads `name` in its stored dtype (any but F8) as a CPU tensor owning a copy of the bytes
  // (for packed integers and scales). NOT_FOUND when absent, INVALID_ARGUMENT for F8.
  absl::StatusOr<torch::Tensor> LoadStored(const std::string& name) const;
  // Path of the file holding `name`; empty when absent.
  std::string FileOf(const std::string& name) const;

 private:
  struct Located {
    std::shared_ptr<MappedFile> file;
    uint64_t data_offset = 0;
    SafetensorsEntry entry;
  };
  Checkpoint() = default;
  absl::Status AddFile(const std::string& path, const std::vector<std::string>* only);

  std::map<std::string, Located> tensors_;
};

}  // namespace quantd::model

#endif  // QUANTD_WORKER_MODEL_CHECKPOINT_H_
