// config.json of a Hugging Face Llama-family checkpoint (LlamaForCausalLM,
// MistralForCausalLM).
//
// ParseLlamaConfig validates what the runtime relies on: positive sizes, heads dividing the
// hidden size, KV heads dividing the heads, hidden_act "silu", a supported rope_scaling. Any
// other architecture is rejected. Errors are INVALID_ARGUMENT naming `label` and the field.
#ifndef QUANTD_WORKER_MODEL_CONFIG_H_
#define QUANTD_WORKER_MODEL_CONFIG_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace quantd::model {

struct RopeScaling {
  enum class Type { kNone, kLinear, kLlama3 };
  Type type = Type::kNone;
  double factor = 1.0;
  // llama3 only.
  double low_freq_factor = 1.0;
  double high_freq_factor = 4.0;
  int64_t original_max_position_embeddings = 8192;
};

struct LlamaConfig {
  std::string architecture;  // "LlamaForCausalLM" or "MistralForCausalLM"
  int64_t hidden_size = 0;
  int64_t intermediate_size = 0;
  int64_t num_hidden_layers = 0;
  int64_t num_attention_heads = 0;
  int64_t num_key_value_heads = 0;  // defaults to num_attention_heads
  int64_t head_dim = 0;             // defaults to hidden_size / num_attention_heads
  int64_t vocab_size = 0;
  int64_t max_position_embeddings = 2048;
  double rms_norm_eps = 1e-6;
  double rope_theta = 10000.0;
  RopeScaling rope_scaling;
  bool tie_word_embeddings = false;
  bool attention_bias = false;
  bool mlp_bias = false;
  int64_t sliding_window = 0;  // 0: none
  int64_t bos_token_id = 1;
  std::vector<int64_t> eos_token_ids;  // may be several (Llama-3)
  std::string torch_dtype = "float32";
};

absl::StatusOr<LlamaConfig> ParseLlamaConfig(absl::string_view json_text, absl::string_view label);

// Reads `model_dir`/config.json. NOT_FOUND when it is missing.
absl::StatusOr<LlamaConfig> LoadLlamaConfig(const std::string& model_dir);

}  // namespace quantd::model

#endif  // QUANTD_WORKER_MODEL_CONFIG_H_
