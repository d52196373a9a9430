#include "absl/status/status.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "proto/common/status_macros.h"
#include "worker/model/device_choice.h"
#include "worker/model/dtype_names.h"
#include "worker/model/llama.h"

namespace quantd::model {
namespace {

class Loader {
 public:
  Loader(const Checkpoint& checkpoint, const LoadOptions& options)
      : checkpoint_(checkpoint), options_(options), device_(options.device) {}

  // Where the next tensors go (a streamed block's go to host memory).
  void set_device(const torch::Device& device) { device_ = device; }

  absl::StatusOr<torch::Tensor> Tensor(const std::string& name, const std::vector<int64_t>& shape) {
    ASSIGN_OR_RETURN(torch::Tensor t, checkpoint_.Load(name, options_.dtype, shape));
    if (device_ != torch::Device(torch::kCPU)) t = t.to(device_);
    // NaN/Inf weights would run to NaN metrics that look like results.
    const int64_t non_finite = t.numel() - torch::isfinite(t).sum().item<int64_t>();
    if (non_finite > 0) {
      return absl::InvalidArgumentError(
          absl::StrCat(name, ": ", non_finite, " of ", t.numel(), " values are not finite in ",
                       DTypeName(options_.dtype),
                       " (NaN or Inf: a corrupt checkpoint, or values beyond that dtype's range)"));
    }
    return t;
  }

  absl::StatusOr<std::shared_ptr<LinearLayer>> Linear(const std::string& prefix, int64_t out,
                                                      int64_t in, bool bias) {
    ASSIGN_OR_RETURN(torch::Tensor weight, Tensor(prefix + ".weight", {out, in}));
    torch::Tensor b;
    if (bias) {
      ASSIGN_OR_RETURN(b, Tensor(prefix + ".bias", {out}));
    }
    return std::shared_ptr<LinearLayer>(std::make_shared<DenseLinear>(weight, b));
  }

 private:
  const Checkpoint& checkpoint_;
  const LoadOptions& options_;
  torch::Device device_;
};

}  // namespace

absl::StatusOr<std::unique_ptr<LlamaModel>> LlamaModel::FromCheckpoint(const LlamaConfig& config,
                                                                       const Checkpoint& checkpoint,
                                                                       const LoadOptions& options) {
  RETURN_IF_ERROR(CheckComputeDtype(options.device, options.dtype));
  if (options.streamed_blocks < 0 || options.streamed_blocks > config.num_hidden_layers) {
    return absl::InvalidArgumentError(absl::StrCat("load: ", options.streamed_blocks,
                                                   " streamed blocks asked for, the model has ",
                                                   config.num_hidden_layers));
  }
  // A config.json with fewer layers than its checkpoint would silently drop the rest.
  for (const std::string& name : checkpoint.TensorNames()) {
    int64_t layer = 0;
    const absl::string_view rest = absl::StripPrefix(name, "model.layers.");
    if (rest.size() != name.size() && absl::SimpleAtoi(rest.substr(0, rest.find('.')), &layer) &&
        layer >= config.num_hidden_layers) {
      return absl::InvalidArgumentError(absl::StrCat(
          "checkpoint has tensor '", name, "' but config.json says num_hidden_layers is ",
          config.num_hidden_layers, " (a config.json of another model?)"));
    }
  }
  try {
    std::unique_ptr<LlamaModel> model(new LlamaModel(config, options));
    Loader load(checkpoint, options);
    const int64_t d = config.hidden_size;
    const int64_t ff = config.intermediate_size;
    const int64_t q_out = config.num_attention_heads * config.head_dim;
    const int64_t kv_out = config.num_key_value_heads * config.head_dim;
    ASSIGN_OR_RETURN(model->embed_tokens,
                     load.Tensor("model.embed_tokens.weight", {config.vocab_size, d}));
    ASSIGN_OR_RETURN(model->final_norm, load.Tensor("model.norm.weight", {d}));
    for (int64_t i = 0; i < config.num_hidden_layers; ++i) {
      const std::string p = absl::StrCat("model.layers.", i, ".");
      load.set_device(options.BlockDevice(i, config.num_hidden_layers));
      LlamaBlock block;
      ASSIGN_OR_RETURN(block.input_norm, load.Tensor(p + "input_layernorm.weight", {d}));
      ASSIGN_OR_RETURN(block.post_attention_norm,
                       load.Tensor(p + "post_attention_layernorm.weight", {d}));
      const bool ab = config.attention_bias;
      ASSIGN_OR_RETURN(block.q_proj, load.Linear(p + "self_attn.q_proj", q_out, d, ab));
      ASSIGN_OR_RETURN(block.k_proj, load.Linear(p + "self_attn.k_proj", kv_out, d, ab));
      ASSIGN_OR_RETURN(block.v_proj, load.Linear(p + "self_attn.v_proj", kv_out, d, ab));
      ASSIGN_OR_RETURN(block.o_proj, load.Linear(p + "self_attn.o_proj", d, q_out, ab));
      const bool mb = config.mlp_bias;
      ASSIGN_OR_RETURN(block.gate_proj, load.Linear(p + "mlp.gate_proj", ff, d, mb));
      ASSIGN_OR_RETURN(block.up_proj, load.Linear(p + "mlp.up_proj", ff, d, mb));
      ASSIGN_OR_RETURN(block.down_proj, load.Linear(p + "mlp.down_proj", d, ff, mb));
      model->blocks.push_back(std::move(block));
    }
    load.set_device(options.device);
    if (config.tie_word_embeddings) {
      model->lm_head = std::make_shared<DenseLinear>(model->embed_tokens);
    } else {
      if (!checkpoint.Contains("lm_head.weight")) {
        return absl::InvalidArgumentError(
            "checkpoint has no tensor 'lm_head.weight' and config.json does not set "
            "tie_word_embeddings");
      }
      ASSIGN_OR_RETURN(model->lm_head, load.Linear("lm_head", config.vocab_size, d, false));
    }
    RETURN_IF_ERROR(
        model->StreamLastBlocks(options.streamed_blocks, DeviceTransfer(options.device)));
    return model;
  } catch (const std::exception& e) {
    return absl::InternalError(absl::StrCat("loading the model failed: ", e.what()));
  }
}

absl::StatusOr<std::unique_ptr<LlamaModel>> LlamaModel::CreateEmpty(const LlamaConfig& config,
                                                                    const LoadOptions& options) {
  RETURN_IF_ERROR(CheckComputeDtype(options.device, options.dtype));
  return std::unique_ptr<LlamaModel>(new LlamaModel(config, options));
}

absl::StatusOr<std::unique_ptr<LlamaModel>> LlamaModel::Load(const std::string& model_dir,
                                                             const LoadOptions& options) {
  ASSIGN_OR_RETURN(LlamaConfig config, LoadLlamaConfig(model_dir));
  ASSIGN_OR_RETURN(std::unique_ptr<Checkpoint> checkpoint, Checkpoint::Open(model_dir));
  return FromCheckpoint(config, *checkpoint, options);
}

}  // namespace quantd::model
