#include "worker/model/llama.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "proto/common/status_macros.h"

namespace quantd::model {
namespace {

// Attention scores computed at once, in elements (256 KiB in float32; measured with
// tests/bench/model: smaller blocks stay in cache, 2^14..2^18 perform alike).
constexpr int64_t kAttentionChunkElements = int64_t{1} << 16;

void Notify(ActivationObserver* observer, int layer, ActivationSite site, const torch::Tensor& x) {
  if (observer != nullptr && observer->Wants(layer, site)) observer->Observe(layer, site, x);
}

// Additive mask [rep * tokens, past + tokens] for `rep` query heads stacked along the token
// axis: row r is query token i = r % tokens (absolute position past + i), which sees key j
// when j <= past + i and, with a sliding window w, past + i - j < w.
torch::Tensor CausalMask(int64_t past, int64_t tokens, int64_t rep, int64_t window,
                         torch::ScalarType dtype, const torch::Device& device) {
  auto query = torch::arange(past, past + tokens, torch::kInt64).repeat({rep}).unsqueeze(1);
  auto key = torch::arange(0, past + tokens, torch::kInt64).unsqueeze(0);
  auto blocked = key > query;
  if (window > 0) blocked = blocked.logical_or(query - key >= window);
  auto mask = torch::zeros({rep * tokens, past + tokens}, dtype);
  mask.masked_fill_(blocked, -std::numeric_limits<float>::infinity());
  return mask.to(device);
}

}  // namespace

torch::Tensor LlamaModel::RmsNorm(const torch::Tensor& x, const torch::Tensor& weight) const {
  auto x32 = x.to(torch::kFloat32);
  auto variance = x32.pow(2).mean(-1, /*keepdim=*/true);
  auto normed = x32 * torch::rsqrt(variance + config_.rms_norm_eps);
  return weight * normed.to(x.scalar_type());
}

torch::Tensor LlamaModel::Embed(const torch::Tensor& ids) const {
  return torch::nn::functional::embedding(ids.to(embed_tokens.device(), torch::kInt64),
                                          embed_tokens);
}

torch::Tensor LlamaModel::RunBlock(int layer, const torch::Tensor& hidden, int64_t start,
                                   const LayerKv* past, LayerKv* present,
                                   ActivationObserver* observer) {
  LlamaBlock& block = blocks.at(layer);
  const BlockLease lease = LeaseBlock(layer);
  const int64_t batch = hidden.size(0);
  const int64_t tokens = hidden.size(1);
  const int64_t heads = config_.num_attention_heads;
  const int64_t kv_heads = config_.num_key_value_heads;
  const int64_t head_dim = config_.head_dim;
  const int64_t rep = heads / kv_heads;

  // Attention.
  auto x = RmsNorm(hidden, block.input_norm);
  Notify(observer, layer, ActivationSite::kQkvInput, x);
  auto q = block.q_proj->Forward(x).view({batch, tokens, heads, head_dim}).transpose(1, 2);
  auto k = block.k_proj->Forward(x).view({batch, tokens, kv_heads, head_dim}).transpose(1, 2);
  auto v = block.v_proj->Forward(x).view({batch, tokens, kv_heads, head_dim}).transpose(1, 2);
  auto [cos, sin] = rope_.CosSin(start, tokens, hidden.scalar_type(), hidden.device());
  q = ApplyRotary(q, cos, sin);
  k = ApplyRotary(k, cos, sin);
  if (block.attention_transform) block.attention_transform->Apply(layer, &q, &k, &v);

  int64_t past_len = 0;
  if (past != nullptr && past->k.defined()) {
    past_len = past->k.size(2);
    k = torch::cat({past->k.expand({batch, kv_heads, past_len, head_dim}), k}, 2);
    v = torch::cat({past->v.expand({batch, kv_heads, past_len, head_dim}), v}, 2);
  }
  if (present != nullptr) *present = LayerKv{k, v};
  const int64_t keys = past_len + tokens;

  // Grouped-query attention without repeating K/V: the query heads that share a KV head are
  // stacked along the token axis. Scale and mask are fused into one product, and (batch, KV
  // head) groups are processed in chunks so the [rows, keys] score blocks stay cache-sized and
  // memory stays bounded for long sequences.
  const int64_t groups = batch * kv_heads;
  auto qg = q.reshape({groups, rep * tokens, head_dim});
  auto kt = k.reshape({groups, keys, head_dim}).transpose(1, 2);
  auto vg = v.reshape({groups, keys, head_dim});
  const MaskKey key{past_len, tokens, hidden.scalar_type(), hidden.device()};
  if (!(key == mask_key_) || !mask_.defined()) {  // the same for every layer of a pass
    mask_ = CausalMask(past_len, tokens, rep, config_.sliding_window, key.dtype, key.device);
    mask_key_ = key;
  }
  const torch::Tensor& mask = mask_;
  const double scale = 1.0 / std::sqrt(static_cast<double>(head_dim));
  const int64_t step = std::max<int64_t>(1, kAttentionChunkElements / (rep * tokens * keys));
  std::vector<torch::Tensor> chunks;
  for (int64_t g = 0; g < groups; g += step) {
    const int64_t n = std::min(step, groups - g);
    auto scores = torch::baddbmm(mask, qg.narrow(0, g, n), kt.narrow(0, g, n), /*beta=*/1.0,
                                 /*alpha=*/scale);
    auto probs = torch::softmax(scores, -1, torch::kFloat32).to(hidden.scalar_type());
    chunks.push_back(torch::bmm(probs, vg.narrow(0, g, n)));
  }
  auto attn = chunks.size() == 1 ? chunks[0] : torch::cat(chunks, 0);
  attn = attn.view({batch, heads, tokens, head_dim})
             .transpose(1, 2)
             .reshape({batch, tokens, heads * head_dim});
  Notify(observer, layer, ActivationSite::kOProjInput, attn);
  auto h = hidden + block.o_proj->Forward(attn);

  // SwiGLU MLP.
  auto m = RmsNorm(h, block.post_attention_norm);
  Notify(observer, layer, ActivationSite::kUpGateInput, m);
  auto inner = torch::silu(block.gate_proj->Forward(m)) * block.up_proj->Forward(m);
  Notify(observer, layer, ActivationSite::kDownProjInput, inner);
  auto out = h + block.down_proj->Forward(inner);
  Notify(observer, layer, ActivationSite::kBlockOutput, out);
  return out;
}

absl::Status LlamaModel::CheckRequest(const ForwardRequest& request) const {
  const bool has_ids = request.input_ids.defined();
  const bool has_embeds = request.input_embeds.defined();
  if (has_ids == has_embeds) {
    return absl::InvalidArgumentError("forward: give exactly one of input_ids, input_embeds");
  }
  int64_t batch = 0;
  if (has_ids) {
    const auto& ids = request.input_ids;
    if (ids.dim() != 2 || ids.size(1) == 0 || !at::isIntegralType(ids.scalar_type(), false)) {
      return absl::InvalidArgumentError(
          "forward: input_ids must be a non-empty integer tensor [batch, tokens]");
    }
    const int64_t lo = ids.min().item<int64_t>();
    const int64_t hi = ids.max().item<int64_t>();
    if (lo < 0 || hi >= config_.vocab_size) {
      return absl::InvalidArgumentError(absl::StrCat("forward: token id ", lo < 0 ? lo : hi,
                                                     " outside the vocabulary [0, ",
                                                     config_.vocab_size, ")"));
    }
    batch = ids.size(0);
  } else {
    const auto& e = request.input_embeds;
    if (e.dim() != 3 || e.size(1) == 0 || e.size(2) != config_.hidden_size) {
      return absl::InvalidArgumentError(
          absl::StrCat("forward: input_embeds must be [batch, tokens, ", config_.hidden_size, "]"));
    }
    batch = e.size(0);
  }
  if (request.past != nullptr && !request.past->empty()) {
    const KvCache& past = *request.past;
    if (static_cast<int64_t>(past.layers.size()) != config_.num_hidden_layers) {
      return absl::InvalidArgumentError(absl::StrCat("forward: past KV cache has ",
                                                     past.layers.size(), " layers, model has ",
                                                     config_.num_hidden_layers));
    }
    for (const auto& layer : past.layers) {
      for (const auto* t : {&layer.k, &layer.v}) {
        if (!t->defined() || t->dim() != 4 || (t->size(0) != 1 && t->size(0) != batch) ||
            t->size(1) != config_.num_key_value_heads || t->size(2) != past.length() ||
            t->size(3) != config_.head_dim) {
          return absl::InvalidArgumentError(
              absl::StrCat("forward: past KV cache tensors must be [1 or ", batch, ", ",
                           config_.num_key_value_heads, ", length, ", config_.head_dim, "]"));
        }
      }
    }
  }
  return absl::OkStatus();
}

ForwardResult LlamaModel::ForwardOrThrow(const ForwardRequest& request) {
  auto hidden = request.input_ids.defined()
                    ? Embed(request.input_ids.to(options_.device))
                    : request.input_embeds.to(options_.device, options_.dtype);
  const KvCache* past =
      (request.past != nullptr && !request.past->empty()) ? request.past : nullptr;
  const int64_t start = past != nullptr ? past->length() : 0;
  ForwardResult result;
  if (request.return_kv) result.kv.layers.resize(blocks.size());
  for (size_t i = 0; i < blocks.size(); ++i) {
    hidden =
        RunBlock(static_cast<int>(i), hidden, start, past != nullptr ? &past->layers[i] : nullptr,
                 request.return_kv ? &result.kv.layers[i] : nullptr, request.observer);
  }
  result.hidden = RmsNorm(hidden, final_norm);
  if (request.logits == LogitsMode::kAll) {
    result.logits = lm_head->Forward(result.hidden);
  } else if (request.logits == LogitsMode::kLast) {
    result.logits = lm_head->Forward(result.hidden.narrow(1, result.hidden.size(1) - 1, 1));
  }
  return result;
}

absl::StatusOr<ForwardResult> LlamaModel::Forward(const ForwardRequest& request) {
  try {
    RETURN_IF_ERROR(CheckRequest(request));
    return ForwardOrThrow(request);
  } catch (const std::exception& e) {
    return absl::InternalError(absl::StrCat("llama forward pass failed: ", e.what()));
  }
}

absl::Status LlamaModel::StreamLastBlocks(int count, BlockTransfer transfer) {
  const int layers = static_cast<int>(blocks.size());
  if (count < 0 || count > layers) {
    return absl::InvalidArgumentError(
        absl::StrCat("block streaming: ", count, " blocks asked for, the model has ", layers));
  }
  if (streamer_ != nullptr) {
    return absl::FailedPreconditionError("block streaming: blocks are streamed already");
  }
  if (count == 0) return absl::OkStatus();
  try {
    auto streamer = std::make_unique<BlockStreamer>(std::move(transfer));
    for (int i = layers - count; i < layers; ++i) streamer->Store(blocks[i]);
    streamer_ = std::move(streamer);
    first_streamed_ = layers - count;
    return absl::OkStatus();
  } catch (const std::exception& e) {
    return absl::InternalError(absl::StrCat("block streaming: ", e.what()));
  }
}

BlockLease LlamaModel::LeaseBlock(int layer) {
  LlamaBlock& block = blocks.at(layer);
  if (!streams_block(layer)) return BlockLease();
  return BlockLease(streamer_.get(), layer, &block);
}

absl::StatusOr<KvCache> LlamaModel::BuildPrefixKv(const torch::Tensor& ids_or_embeds) {
  ForwardRequest request;
  if (ids_or_embeds.defined() && ids_or_embeds.dim() == 3) {
    request.input_embeds = ids_or_embeds;
  } else {
    request.input_ids = ids_or_embeds;
  }
  request.logits = LogitsMode::kNone;
  request.return_kv = true;
  const int64_t batch =
      ids_or_embeds.defined() && ids_or_embeds.dim() >= 1 ? ids_or_embeds.size(0) : 0;
  if (batch != 1) return absl::InvalidArgumentError("prefix KV: the prefix must have batch 1");
  ASSIGN_OR_RETURN(ForwardResult result, Forward(request));
  return std::move(result.kv);
}

}  // namespace quantd::model
