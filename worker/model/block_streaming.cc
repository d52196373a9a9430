#include "worker/model/block_streaming.h"

#include <exception>
#include <unordered_map>
#include <utility>

#include "worker/model/llama.h"

namespace quantd::model {
namespace {

const void* Identity(const torch::Tensor& t) { return t.unsafeGetTensorImpl(); }

std::array<std::shared_ptr<LinearLayer>*, 7> Projections(LlamaBlock& block) {
  return {&block.q_proj,    &block.k_proj,  &block.v_proj,   &block.o_proj,
          &block.gate_proj, &block.up_proj, &block.down_proj};
}

}  // namespace

BlockTransfer DeviceTransfer(const torch::Device& compute) {
  BlockTransfer transfer;
  transfer.to_compute = [compute](const torch::Tensor& t) {
    return t.to(compute, /*non_blocking=*/true);
  };
  const bool pin = compute.is_cuda();
  transfer.to_storage = [pin](const torch::Tensor& t) {
    if (t.device().is_cpu() && (!pin || t.is_pinned())) return t;
    auto host = torch::empty(t.sizes(), t.options().device(torch::kCPU).pinned_memory(pin));
    host.copy_(t);
    return host;
  };
  return transfer;
}

std::vector<torch::Tensor*> BlockTensorSlots(LlamaBlock& block) {
  std::vector<torch::Tensor*> slots = {&block.input_norm, &block.post_attention_norm};
  for (auto* layer : Projections(block)) {
    if (*layer == nullptr) continue;
    for (torch::Tensor* t : (*layer)->StateTensors()) slots.push_back(t);
  }
  if (block.attention_transform) {
    for (torch::Tensor* t : block.attention_transform->StateTensors()) slots.push_back(t);
  }
  return slots;
}

void BlockStreamer::Store(LlamaBlock& block) {
  torch::NoGradGuard no_grad;
  std::unordered_map<const void*, torch::Tensor> stored;  // tensors shared by two slots
  for (torch::Tensor* slot : BlockTensorSlots(block)) {
    if (!slot->defined()) continue;
    auto [it, fresh] = stored.try_emplace(Identity(*slot));
    if (fresh) it->second = transfer_.to_storage(slot->detach());
    *slot = it->second;
  }
}

void BlockStreamer::Acquire(int layer, LlamaBlock& block) {
  if (leases_[layer].count > 0) {
    ++leases_[layer].count;
    return;
  }
  torch::NoGradGuard no_grad;
  // Copy everything first, so that a failed copy (device out of memory) changes nothing.
  Lease lease;
  std::vector<std::pair<torch::Tensor*, torch::Tensor>> assign;
  std::unordered_map<const void*, torch::Tensor> copies;
  try {
    for (torch::Tensor* slot : BlockTensorSlots(block)) {
      if (!slot->defined()) continue;
      auto [it, fresh] = copies.try_emplace(Identity(*slot));
      if (fresh) {
        it->second = transfer_.to_compute(*slot);
        lease.moved.push_back({*slot, it->second, it->second._version()});
      }
      assign.emplace_back(slot, it->second);
    }
  } catch (...) {
    leases_.erase(layer);
    throw;
  }
  for (auto& [slot, copy] : assign) *slot = std::move(copy);
  for (auto* l : Projections(block)) lease.layers.push_back(*l);
  lease.layers.push_back(block.attention_transform);
  lease.count = 1;
  leases_[layer] = std::move(lease);
}

void BlockStreamer::Release(int layer, LlamaBlock& block) {
  auto found = leases_.find(layer);
  if (found == leases_.end()) return;
  if (--found->second.count > 0) return;
  Lease lease = std::move(found->second);
  leases_.erase(found);
  torch::NoGradGuard no_grad;
  // Device copies still untouched go back to their originals; anything else is copied back.
  std::unordered_map<const void*, torch::Tensor> back;
  for (const Moved& m : lease.moved) {
    if (m.compute._version() == m.version) back.emplace(Identity(m.compute), m.storage);
  }
  for (torch::Tensor* slot : BlockTensorSlots(block)) {
    if (!slot->defined()) continue;
    auto [it, fresh] = back.try_emplace(Identity(*slot));
    if (fresh) it->second = transfer_.to_storage(slot->detach());
    *slot = it->second;
  }
}

int BlockStreamer::leases(int layer) const {
  auto it = leases_.find(layer);
  return it == leases_.end() ? 0 : it->second.count;
}

BlockLease::BlockLease(BlockStreamer* streamer, int layer, LlamaBlock* block)
    : streamer_(streamer), layer_(layer), block_(block) {
  if (streamer_ != nullptr) streamer_->Acquire(layer_, *block_);
}

BlockLease::BlockLease(BlockLease&& other) noexcept
    : streamer_(std::exchange(other.streamer_, nullptr)),
      layer_(other.layer_),
      block_(other.block_) {}

BlockLease& BlockLease::operator=(BlockLease&& other) noexcept {
  if (this != &other) {
    Reset();
    streamer_ = std::exchange(other.streamer_, nullptr);
    layer_ = other.layer_;
    block_ = other.block_;
  }
  return *this;
}

BlockLease::~BlockLease() { Reset(); }

void BlockLease::Reset() {
  if (streamer_ == nullptr) return;
  try {
    streamer_->Release(layer_, *block_);
  } catch (const std::exception&) {
    // A failed copy back leaves the remaining tensors on the device: their values are right,
    // only the memory is not given back.
  }
  streamer_ = nullptr;
}

}  // namespace quantd::model
