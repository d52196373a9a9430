// A Llama-family decoder (Llama-2/3, Mistral) in LibTorch, computing what Hugging Face's
// LlamaForCausalLM computes: RMSNorm, rotate_half RoPE (with linear/llama3 scaling), grouped-
// query attention with a causal mask, SwiGLU MLP, tied or separate lm_head.
//
// Extras for quantization work:
//  * a KV cache passed as `past` (e.g. a prefix KV cache with batch 1 shared by every sequence
//    of the batch); real tokens then sit at positions past.length(), past.length() + 1, ...
//  * input embeddings instead of token ids (trainable prefix);
//  * an ActivationObserver (see modules.h) that sees per-block activations without copies;
//  * every projection and the K/V path are replaceable (LlamaBlock's public members).
//
// Forward() does not change autograd mode: callers that only evaluate use torch::NoGradGuard.
// A LlamaModel is not thread-safe; one forward pass at a time.
//
// Block streaming (block_streaming.h): the last blocks may live in host memory; RunBlock (and
// so Forward) brings each over while it runs. Code that touches a block's tensors directly
// holds LeaseBlock(layer) meanwhile; for a block that is not streamed the lease is empty.
#ifndef QUANTD_WORKER_MODEL_LLAMA_H_
#define QUANTD_WORKER_MODEL_LLAMA_H_

#include <torch/torch.h>

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "worker/model/block_streaming.h"
#include "worker/model/checkpoint.h"
#include "worker/model/config.h"
#include "worker/model/modules.h"
#include "worker/model/rope.h"

namespace quantd::model {

struct LoadOptions {
  torch::ScalarType dtype = torch::kFloat32;  // compute dtype; weights are cast on load
  torch::Device device = torch::kCPU;
  // The last `streamed_blocks` decoder blocks are loaded into host memory and streamed to
  // `device` (block_streaming.h, DeviceTransfer); the rest of the model lives on `device`.
  int streamed_blocks = 0;

  // Where a loader puts block `layer` of a model with `layers` blocks: the host for the
  // streamed ones, `device` for the rest.
  torch::Device BlockDevice(int64_t layer, int64_t layers) const {
    return layer < layers - streamed_blocks ? device : torch::Device(torch::kCPU);
  }
};

struct LlamaBlock {
  torch::Tensor input_norm;           // [hidden]
  torch::Tensor post_attention_norm;  // [hidden]
  std::shared_ptr<LinearLayer> q_proj, k_proj, v_proj, o_proj;
  std::shared_ptr<LinearLayer> gate_proj, up_proj, down_proj;
  std::shared_ptr<AttentionTransform> attention_transform;  // null: identity
};

enum class LogitsMode { kAll, kLast, kNone };

struct ForwardRequest {
  torch::Tensor input_ids;                 // [batch, tokens], integer; or
  torch::Tensor input_embeds;              // [batch, tokens, hidden] (exactly one of the two)
  const KvCache* past = nullptr;           // not owned; batch 1 or the request's batch
  ActivationObserver* observer = nullptr;  // not owned
  LogitsMode logits = LogitsMode::kAll;
  bool return_kv = false;  // ForwardResult::kv = past followed by the new tokens' K/V
};

struct ForwardResult {
  torch::Tensor logits;  // [batch, tokens or 1, vocab] in the compute dtype (kNone: undefined)
  torch::Tensor hidden;  // final-normed hidden states [batch, tokens, hidden]
  KvCache kv;
};

class LlamaModel {
 public:
  // Loads config.json and the safetensors checkpoint of `model_dir`. Errors: NOT_FOUND (files
  // missing), INVALID_ARGUMENT (bad config, missing tensor, shape disagreeing with the
  // config, unsupported dtype; a compute dtype the device cannot run, CheckComputeDtype), each
  // naming the file and tensor.
  static absl::StatusOr<std::unique_ptr<LlamaModel>> Load(const std::string& model_dir,
                                                          const LoadOptions& options = {});
  static absl::StatusOr<std::unique_ptr<LlamaModel>> FromCheckpoint(
      const LlamaConfig& config, const Checkpoint& checkpoint, const LoadOptions& options = {});
  // A model with no weights and no blocks, for loaders that fill in the public members
  // themselves (e.g. a quantized export, worker/export). INVALID_ARGUMENT for a compute dtype
  // the device cannot run (CheckComputeDtype).
  static absl::StatusOr<std::unique_ptr<LlamaModel>> CreateEmpty(const LlamaConfig& config,
                                                                 const LoadOptions& options = {});

  // INVALID_ARGUMENT for malformed requests (shapes, ids out of range, wrong past), INTERNAL
  // for a LibTorch failure, with context.
  absl::StatusOr<ForwardResult> Forward(const ForwardRequest& request);
  // The same, throwing std::exception instead; for code that is itself a LibTorch call site
  // (training loops) and catches there.
  ForwardResult ForwardOrThrow(const ForwardRequest& request);

  // Runs a batch-1 sequence (ids [1, P] or embeds [1, P, hidden]) and returns its KV cache,
  // to be used as `past` of later passes.
  absl::StatusOr<KvCache> BuildPrefixKv(const torch::Tensor& ids_or_embeds);

  // Pieces of the forward pass, for block-wise work. Throw on bad input.
  torch::Tensor Embed(const torch::Tensor& ids) const;
  // One decoder block on hidden [batch, tokens, hidden] whose first token is at `start`.
  // `past` (optional) is joined before the new K/V; `present` (optional) receives the joined
  // K/V.
  torch::Tensor RunBlock(int layer, const torch::Tensor& hidden, int64_t start, const LayerKv* past,
                         LayerKv* present, ActivationObserver* observer);
  torch::Tensor RmsNorm(const torch::Tensor& x, const torch::Tensor& weight) const;

  // Streams the last `count` blocks with `transfer` from now on, moving their tensors to
  // storage. INVALID_ARGUMENT for a count outside [0, layers]; FAILED_PRECONDITION when blocks
  // are streamed already.
  absl::Status StreamLastBlocks(int count, BlockTransfer transfer);
  bool streams_block(int layer) const { return streamer_ != nullptr && layer >= first_streamed_; }
  int streamed_blocks() const {
    return streamer_ == nullptr ? 0 : static_cast<int>(blocks.size()) - first_streamed_;
  }
  // Holds block `layer` on the compute device while the lease lives (throws std::out_of_range
  // for a bad layer).
  BlockLease LeaseBlock(int layer);

  const LlamaConfig& config() const { return config_; }
  torch::ScalarType dtype() const { return options_.dtype; }
  const torch::Device& device() const { return options_.device; }

  torch::Tensor embed_tokens;  // [vocab, hidden]
  torch::Tensor final_norm;    // [hidden]
  std::shared_ptr<LinearLayer> lm_head;
  std::vector<LlamaBlock> blocks;

 private:
  LlamaModel(LlamaConfig config, LoadOptions options)
      : config_(std::move(config)), options_(options), rope_(config_) {}
  absl::Status CheckRequest(const ForwardRequest& request) const;

  struct MaskKey {
    int64_t past = -1;
    int64_t tokens = -1;
    torch::ScalarType dtype = torch::kFloat32;
    torch::Device device = torch::kCPU;
    bool operator==(const MaskKey& o) const {
      return past == o.past && tokens == o.tokens && dtype == o.dtype && device == o.device;
    }
  };

  LlamaConfig config_;
  LoadOptions options_;
  RotaryEmbedding rope_;
  // The attention mask of the latest shape, reused by every layer (and by later passes of the
  // same shape).
  torch::Tensor mask_;
  MaskKey mask_key_;
  std::unique_ptr<BlockStreamer> streamer_;  // null: every block on the compute device
  int first_streamed_ = 0;
};

}  // namespace quantd::model

#endif  // QUANTD_WORKER_MODEL_LLAMA_H_
