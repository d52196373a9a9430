// Block streaming: decoder blocks whose tensors live in host memory and visit the compute
// device only while they are used, so that a model larger than the device memory a job may use
// (resources.max_memory) still runs, at the price of one host-to-device copy of each streamed
// block per use.
//
// A LlamaModel streams the blocks named at load time (LoadOptions::streamed_blocks). RunBlock
// brings its block over by itself; code that works on a block's tensors directly (rotation,
// quantization, fine-tuning) holds a BlockLease (LlamaModel::LeaseBlock) while it does. When
// the last lease of a block ends, the block's tensors go back to host memory: unchanged ones by
// dropping the device copy (the host original is kept), replaced, new, or changed-in-place
// ones by copying their value back (detached from autograd). So a lease must outlive any
// optimizer over the block's tensors and any use of the tensors it handed out.
//
// Autograd graphs keep their own references to the device copies they saved: a backward pass
// through streamed blocks (prefix training) holds every block it passes on the device until it
// has run.
#ifndef QUANTD_WORKER_MODEL_BLOCK_STREAMING_H_
#define QUANTD_WORKER_MODEL_BLOCK_STREAMING_H_

#include <torch/torch.h>

#include <functional>
#include <map>
#include <memory>
#include <vector>

namespace quantd::model {

struct LlamaBlock;

// How a tensor travels between the two memories. Both must return a tensor with the same
// value; they may return the argument itself when it already is where it should be.
struct BlockTransfer {
  std::function<torch::Tensor(const torch::Tensor&)> to_compute;
  std::function<torch::Tensor(const torch::Tensor&)> to_storage;
};

// The usual transfer for a compute device: to the device without blocking the host (from
// pinned memory), back into pinned host memory when the device is CUDA, plain host memory on
// the CPU (where streaming moves nothing).
BlockTransfer DeviceTransfer(const torch::Device& compute);

// Every tensor slot of a block: the norms, each projection's and the attention transform's
// StateTensors().
std::vector<torch::Tensor*> BlockTensorSlots(LlamaBlock& block);

// The lease bookkeeping of one model's streamed blocks (owned by LlamaModel). Not thread-safe.
class BlockStreamer {
 public:
  explicit BlockStreamer(BlockTransfer transfer) : transfer_(std::move(transfer)) {}

  // Moves every tensor of `block` to storage (no lease may be held on it).
  void Store(LlamaBlock& block);
  // The first Acquire of a block copies its tensors to the compute device; later ones (nested
  // leases) only count. Release undoes the matching Acquire; the last one stores the block.
  void Acquire(int layer, LlamaBlock& block);
  void Release(int layer, LlamaBlock& block);
  int leases(int layer) const;

 private:
  struct Moved {
    torch::Tensor storage;  // the original in host memory
    torch::Tensor compute;  // its copy on the device, as handed to the block
    int64_t version = 0;    // compute's version counter right after the copy
  };
  struct Lease {
    int count = 0;
    std::vector<Moved> moved;
    // The block's layers at the first Acquire, so none is freed (and its address reused) while
    // the lease lasts.
    std::vector<std::shared_ptr<void>> layers;
  };

  BlockTransfer transfer_;
  std::map<int, Lease> leases_;
};

// Holds a block on the compute device for its lifetime (see the top of this file). Empty for a
// block that is not streamed. Must not outlive its model.
class BlockLease {
 public:
  BlockLease() = default;
  BlockLease(BlockStreamer* streamer, int layer, LlamaBlock* block);
  BlockLease(BlockLease&& other) noexcept;
  BlockLease& operator=(BlockLease&& other) noexcept;
  BlockLease(const BlockLease&) = delete;
  BlockLease& operator=(const BlockLease&) = delete;
  ~BlockLease();

 private:
  void Reset();

  BlockStreamer* streamer_ = nullptr;
  int layer_ = -1;
  LlamaBlock* block_ = nullptr;
};

}  // namespace quantd::model

#endif  // QUANTD_WORKER_MODEL_BLOCK_STREAMING_H_
