// A model::BlockTransfer for testing block streaming on the CPU, where host and device memory
// are the same: "host memory" holds float64 copies of a float32 model's block tensors and "the
// device" float32 ones. The round trip is exact, so a streamed model computes bit for bit what
// a resident one does; a block tensor used without a lease meets float32 activations as
// float64, and LibTorch refuses or the results come out float64: the CPU stand-in for a host
// tensor meeting a CUDA tensor. Counts the copies each way.
#ifndef QUANTD_TESTS_COMMON_DTYPE_TRANSFER_H_
#define QUANTD_TESTS_COMMON_DTYPE_TRANSFER_H_

#include <torch/torch.h>

#include <memory>

#include "worker/model/block_streaming.h"
#include "worker/model/llama.h"

namespace quantd::test_data {

struct TransferCounts {
  int to_compute = 0;
  int to_storage = 0;
};

inline model::BlockTransfer DtypeTransfer(std::shared_ptr<TransferCounts> counts) {
  model::BlockTransfer transfer;
  transfer.to_compute = [counts](const torch::Tensor& t) {
    ++counts->to_compute;
    return t.scalar_type() == torch::kFloat64 ? t.to(torch::kFloat32) : t.clone();
  };
  transfer.to_storage = [counts](const torch::Tensor& t) {
    ++counts->to_storage;
    return t.scalar_type() == torch::kFloat32 ? t.to(torch::kFloat64) : t.clone();
  };
  return transfer;
}

// True when every floating tensor of block `layer` is in "host memory" (float64).
inline bool BlockInStorage(model::LlamaModel& model, int layer) {
  for (torch::Tensor* t : model::BlockTensorSlots(model.blocks.at(layer))) {
    if (t->defined() && t->is_floating_point() && t->scalar_type() != torch::kFloat64) {
      return false;
    }
  }
  return true;
}

}  // namespace quantd::test_data

#endif  // QUANTD_TESTS_COMMON_DTYPE_TRANSFER_H_
