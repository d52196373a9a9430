#include "worker/model/config.h"

#include <fstream>
#include <sstream>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "nlohmann/json.hpp"
#include "proto/common/status_macros.h"

namespace quantd::model {
namespace {

using nlohmann::json;

absl::Status Bad(absl::string_view label, absl::string_view field, absl::string_view what) {
  return absl::InvalidArgumentError(
      absl::StrCat("config ", label, ": field \"", field, "\" ", what));
}

// Reads a positive integer field; `required` fields must be present.
absl::Status ReadPositive(const json& root, absl::string_view label, const char* field,
                          bool required, int64_t* out) {
  auto it = root.find(field);
  if (it == root.end() || it->is_null()) {
    if (required) return Bad(label, field, "is missing");
    return absl::OkStatus();
  }
  if (!it->is_number_integer() || it->get<int64_t>() <= 0) {
    return Bad(label, field, "must be a positive integer");
  }
  *out = it->get<int64_t>();
  return absl::OkStatus();
}

absl::Status ReadNumber(const json& root, absl::string_view label, const char* field, double* out) {
  auto it = root.find(field);
  if (it == root.end() || it->is_null()) return absl::OkStatus();
  if (!it->is_number() || it->get<double>() <= 0) {
    return Bad(label, field, "must be a positive number");
  }
  *out = it->get<double>();
  return absl::OkStatus();
}

absl::Status ReadBool(const json& root, absl::string_view label, const char* field, bool* out) {
  auto it = root.find(field);
  if (it == root.end() || it->is_null()) return absl::OkStatus();
  if (!it->is_boolean()) return Bad(label, field, "must be true or false");
  *out = it->get<bool>();
  return absl::OkStatus();
}

absl::Status ReadRopeScaling(const json& root, absl::string_view label, RopeScaling* out) {
  auto it = root.find("rope_scaling");
  if (it == root.end() || it->is_null()) return absl::OkStatus();
  if (!it->is_object()) return Bad(label, "rope_scaling", "must be an object or null");
  std::string type;
  for (const char* key : {"rope_type", "type"}) {
    auto t = it->find(key);
    if (t != it->end() && t->is_string()) {
      type = t->get<std::string>();
      break;
    }
  }
  if (type == "default") return absl::OkStatus();
  if (type == "linear") {
    out->type = RopeScaling::Type::kLinear;
  } else if (type == "llama3") {
    out->type = RopeScaling::Type::kLlama3;
  } else {
    return Bad(label, "rope_scaling",
               absl::StrCat("has type \"", type, "\"; supported: default, linear, llama3"));
  }
  RETURN_IF_ERROR(ReadNumber(*it, label, "factor", &out->factor));
  if (out->type == RopeScaling::Type::kLlama3) {
    RETURN_IF_ERROR(ReadNumber(*it, label, "low_freq_factor", &out->low_freq_factor));
    RETURN_IF_ERROR(ReadNumber(*it, label, "high_freq_factor", &out->high_freq_factor));
    RETURN_IF_ERROR(ReadPositive(*it, label, "original_max_position_embeddings", false,
                                 &out->original_max_position_embeddings));
    if (out->high_freq_factor <= out->low_freq_factor) {
      return Bad(label, "rope_scaling", "needs high_freq_factor > low_freq_factor");
    }
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<LlamaConfig> ParseLlamaConfig(absl::string_view json_text, absl::string_view label) {
  json root = json::parse(json_text.begin(), json_text.end(), nullptr, false);
  if (root.is_discarded() || !root.is_object()) {
    return absl::InvalidArgumentError(absl::StrCat("config ", label, ": not a JSON object"));
  }
  LlamaConfig config;
  auto arch = root.find("architectures");
  if (arch == root.end() || !arch->is_array() || arch->empty() || !(*arch)[0].is_string()) {
    return Bad(label, "architectures", "must be a non-empty list of names");
  }
  config.architecture = (*arch)[0].get<std::string>();
  if (config.architecture != "LlamaForCausalLM" && config.architecture != "MistralForCausalLM") {
    return absl::InvalidArgumentError(
        absl::StrCat("config ", label, ": architecture \"", config.architecture,
                     "\" is not supported (supported: LlamaForCausalLM, MistralForCausalLM)"));
  }
  RETURN_IF_ERROR(ReadPositive(root, label, "hidden_size", true, &config.hidden_size));
  RETURN_IF_ERROR(ReadPositive(root, label, "intermediate_size", true, &config.intermediate_size));
  RETURN_IF_ERROR(ReadPositive(root, label, "num_hidden_layers", true, &config.num_hidden_layers));
  RETURN_IF_ERROR(
      ReadPositive(root, label, "num_attention_heads", true, &config.num_attention_heads));
  config.num_key_value_heads = config.num_attention_heads;
  RETURN_IF_ERROR(
      ReadPositive(root, label, "num_key_value_heads", false, &config.num_key_value_heads));
  RETURN_IF_ERROR(ReadPositive(root, label, "vocab_size", true, &config.vocab_size));
  RETURN_IF_ERROR(
      ReadPositive(root, label, "max_position_embeddings", false, &config.max_position_embeddings));
  if (config.hidden_size % config.num_attention_heads != 0) {
    return Bad(label, "num_attention_heads", "must divide hidden_size");
  }
  config.head_dim = config.hidden_size / config.num_attention_heads;
  RETURN_IF_ERROR(ReadPositive(root, label, "head_dim", false, &config.head_dim));
  if (config.head_dim % 2 != 0) return Bad(label, "head_dim", "must be even for RoPE");
  if (config.num_attention_heads % config.num_key_value_heads != 0) {
    return Bad(label, "num_key_value_heads", "must divide num_attention_heads");
  }
  RETURN_IF_ERROR(ReadNumber(root, label, "rms_norm_eps", &config.rms_norm_eps));
  RETURN_IF_ERROR(ReadNumber(root, label, "rope_theta", &config.rope_theta));
  RETURN_IF_ERROR(ReadRopeScaling(root, label, &config.rope_scaling));
  RETURN_IF_ERROR(ReadBool(root, label, "tie_word_embeddings", &config.tie_word_embeddings));
  RETURN_IF_ERROR(ReadBool(root, label, "attention_bias", &config.attention_bias));
  RETURN_IF_ERROR(ReadBool(root, label, "mlp_bias", &config.mlp_bias));
  RETURN_IF_ERROR(ReadPositive(root, label, "sliding_window", false, &config.sliding_window));

  auto act = root.find("hidden_act");
  if (act != root.end() && !act->is_null() &&
      !(act->is_string() && act->get<std::string>() == "silu")) {
    return Bad(label, "hidden_act", "must be \"silu\"");
  }
  auto bos = root.find("bos_token_id");
  if (bos != root.end() && !bos->is_null()) {
    if (!bos->is_number_integer() || bos->get<int64_t>() < 0) {
      return Bad(label, "bos_token_id", "must be a non-negative integer");
    }
    config.bos_token_id = bos->get<int64_t>();
  }
  auto eos = root.find("eos_token_id");
  if (eos != root.end() && !eos->is_null()) {
    json list = eos->is_array() ? *eos : json::array({*eos});
    for (const auto& id : list) {
      if (!id.is_number_integer() || id.get<int64_t>() < 0) {
        return Bad(label, "eos_token_id", "must be a non-negative integer or a list of them");
      }
      config.eos_token_ids.push_back(id.get<int64_t>());
    }
  }
  auto dtype = root.find("torch_dtype");
  if (dtype != root.end() && dtype->is_string()) config.torch_dtype = dtype->get<std::string>();
  return config;
}

absl::StatusOr<LlamaConfig> LoadLlamaConfig(const std::string& model_dir) {
  const std::string path = model_dir + "/config.json";
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat("cannot read ", path));
  std::stringstream text;
  text << in.rdbuf();
  return ParseLlamaConfig(text.str(), path);
}

}  // namespace quantd::model
