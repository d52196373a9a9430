#include "worker/export/artifact_reader.h"

#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "proto/common/status_macros.h"
#include "worker/export/artifact_format.h"
#include "worker/export/bit_pack.h"
#include "worker/export/sha256.h"
#include "worker/export/tensor_io.h"
#include "worker/export/weight_codec.h"
#include "worker/model/checkpoint.h"
#include "worker/model/dtype_names.h"
#include "worker/quant/kv_transform.h"
#include "worker/quant/quant_linear.h"

namespace quantd::exporter {
namespace {

namespace fs = std::filesystem;

absl::Status Bad(const std::string& field, const std::string& what) {
  return absl::InvalidArgumentError(absl::StrCat(kQuantConfigFile, ": ", field, " ", what));
}

// Reads a field of `object` of type T at "a.b" for messages; INVALID_ARGUMENT when missing or
// of another type.
template <typename T>
absl::StatusOr<T> Field(const nlohmann::json& object, const std::string& section,
                        const std::string& key) {
  const std::string where = section.empty() ? key : section + "." + key;
  if (!object.is_object() || !object.contains(key)) return Bad(where, "is missing");
  const nlohmann::json& value = object.at(key);
  try {
    if constexpr (std::is_same_v<T, bool>) {
      if (!value.is_boolean()) return Bad(where, "must be true or false");
    } else if constexpr (std::is_arithmetic_v<T>) {
      if (!value.is_number()) return Bad(where, "must be a number");
    } else if constexpr (std::is_same_v<T, std::string>) {
      if (!value.is_string()) return Bad(where, "must be a string");
    }
    return value.get<T>();
  } catch (const std::exception& e) {
    return Bad(where, absl::StrCat("cannot be read: ", e.what()));
  }
}

absl::Status CheckBits(int bits, const std::string& where) {
  if (bits == 16 || (bits >= 2 && bits <= 8)) return absl::OkStatus();
  return Bad(where, absl::StrCat("is ", bits, "; valid bit widths are 2..8 and 16"));
}

absl::StatusOr<bool> Mode(const nlohmann::json& section, const std::string& name) {
  ASSIGN_OR_RETURN(std::string mode, Field<std::string>(section, name, "mode"));
  if (mode != "static" && mode != "dynamic") {
    return Bad(name + ".mode", "must be \"static\" or \"dynamic\", got \"" + mode + "\"");
  }
  return mode == "dynamic";
}

absl::StatusOr<std::optional<int64_t>> HadamardOrder(const nlohmann::json& rotation,
                                                     const std::string& key) {
  if (!rotation.contains(key) || rotation.at(key).is_null()) return std::optional<int64_t>();
  ASSIGN_OR_RETURN(int64_t n, Field<int64_t>(rotation.at(key), "rotation." + key, "n"));
  ASSIGN_OR_RETURN(int64_t k, Field<int64_t>(rotation.at(key), "rotation." + key, "base_order"));
  ASSIGN_OR_RETURN(int m, Field<int>(rotation.at(key), "rotation." + key, "log2_pow2"));
  if (k < 1 || m < 0 || m > 30 || n != k * (int64_t{1} << m)) {
    return Bad("rotation." + key, "has n != base_order * 2^log2_pow2");
  }
  return std::optional<int64_t>(n);
}

absl::StatusOr<nlohmann::json> ReadJson(const std::string& path, const std::string& label) {
  std::ifstream in(path, std::ios::binary);
  if (!in)
    return absl::NotFoundError(
        absl::StrCat(label, " is missing in ", fs::path(path).parent_path().string()));
  std::stringstream text;
  text << in.rdbuf();
  nlohmann::json j = nlohmann::json::parse(text.str(), nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded() || !j.is_object()) {
    return absl::InvalidArgumentError(absl::StrCat(label, ": not a JSON object"));
  }
  return j;
}

std::string Shape(const std::vector<int64_t>& shape) {
  return absl::StrCat("[", absl::StrJoin(shape, ", "), "]");
}

// Checks that `checkpoint` holds exactly `expected` (names, dtypes, shapes).
absl::Status CheckTensors(const model::Checkpoint& checkpoint,
                          const std::vector<TensorDecl>& expected, const std::string& file) {
  std::set<std::string> names;
  for (const TensorDecl& t : expected) {
    names.insert(t.name);
    auto entry = checkpoint.Entry(t.name);
    if (!entry.ok()) {
      return absl::InvalidArgumentError(absl::StrCat(file, ": tensor '", t.name, "' is missing (",
                                                     kQuantConfigFile,
                                                     " and config.json call for it)"));
    }
    const std::string where = checkpoint.FileOf(t.name);
    if (entry->dtype != t.dtype || entry->shape != t.shape) {
      return absl::InvalidArgumentError(absl::StrCat(
          fs::path(where).filename().string(), ": tensor '", t.name, "' is ",
          model::StDTypeName(entry->dtype), " ", Shape(entry->shape), " but ", kQuantConfigFile,
          " and config.json call for ", model::StDTypeName(t.dtype), " ", Shape(t.shape)));
    }
  }
  for (const std::string& name : checkpoint.TensorNames()) {
    if (!names.count(name)) {
      return absl::InvalidArgumentError(
          absl::StrCat(fs::path(checkpoint.FileOf(name)).filename().string(),
                       ": unexpected tensor '", name, "' (not in ", kQuantConfigFile, ")"));
    }
  }
  return absl::OkStatus();
}

absl::Status CheckChecksums(const std::string& dir, const nlohmann::json& manifest,
                            uint64_t* total_bytes) {
  if (!manifest.contains("files") || !manifest.at("files").is_array()) {
    return absl::InvalidArgumentError(absl::StrCat(kManifestFile, ": no \"files\" list"));
  }
  *total_bytes = 0;
  for (const auto& f : manifest.at("files")) {
    if (!f.is_object() || !f.contains("name") || !f.at("name").is_string() ||
        !f.contains("sha256") || !f.contains("bytes")) {
      return absl::InvalidArgumentError(absl::StrCat(kManifestFile, ": malformed files entry"));
    }
    const std::string name = f.at("name").get<std::string>();
    if (name.find('/') != std::string::npos || name == ".." || name.empty()) {
      return absl::InvalidArgumentError(absl::StrCat(kManifestFile, ": bad file name ", name));
    }
    const std::string path = dir + "/" + name;
    std::error_code error;
    if (!fs::is_regular_file(path, error)) {
      return absl::DataLossError(absl::StrCat(name, ": missing (", kManifestFile, " lists it)"));
    }
    const uint64_t bytes = fs::file_size(path, error);
    const uint64_t recorded = f.at("bytes").get<uint64_t>();
    if (bytes != recorded) {
      return absl::DataLossError(absl::StrCat(name, ": ", bytes, " bytes, ", kManifestFile,
                                              " records ", recorded, " (truncated or changed)"));
    }
    ASSIGN_OR_RETURN(std::string sha, Sha256OfFile(path));
    if (sha != f.at("sha256").get<std::string>()) {
      return absl::DataLossError(
          absl::StrCat(name, ": SHA-256 ", sha, " differs from ", kManifestFile, "'s ",
                       f.at("sha256").get<std::string>(), " (the file is corrupt or was changed)"));
    }
    *total_bytes += bytes;
  }
  return absl::OkStatus();
}

std::string ModelFileLabel(const QuantConfig& quant) {
  return quant.json.contains("files") && quant.json["files"].contains("model") &&
                 quant.json["files"]["model"].is_string()
             ? quant.json["files"]["model"].get<std::string>()
             : std::string("model.safetensors");
}

absl::StatusOr<kernels::HadamardFactors> Factors(const model::Checkpoint& checkpoint,
                                                 const nlohmann::json& recorded,
                                                 const std::string& tensor) {
  kernels::HadamardFactors f;
  f.n = recorded.at("n").get<int64_t>();
  f.base_order = recorded.at("base_order").get<int64_t>();
  f.log2_pow2 = recorded.at("log2_pow2").get<int>();
  f.is_hadamard = recorded.value("is_hadamard", true);
  f.construction = recorded.value("construction", std::string());
  ASSIGN_OR_RETURN(torch::Tensor base, checkpoint.LoadStored(tensor));
  base = base.to(torch::kFloat32).contiguous();
  f.base.assign(base.data_ptr<float>(), base.data_ptr<float>() + base.numel());
  return f;
}

}  // namespace

absl::StatusOr<QuantConfig> ParseQuantConfig(const nlohmann::json& j) {
  QuantConfig q;
  q.json = j;
  ASSIGN_OR_RETURN(std::string format, Field<std::string>(j, "", "format"));
  if (format != kFormatName) return Bad("format", "is \"" + format + "\", not " + kFormatName);
  ASSIGN_OR_RETURN(int version, Field<int>(j, "", "format_version"));
  if (version != kFormatVersion) {
    return Bad("format_version",
               absl::StrCat("is ", version, "; this build reads ", kFormatVersion));
  }
  ASSIGN_OR_RETURN(std::string dtype, Field<std::string>(j, "", "dtype"));
  auto parsed = model::DTypeFromName(dtype);
  if (!parsed.ok()) return Bad("dtype", std::string(parsed.status().message()));
  q.dtype = *parsed;
  ASSIGN_OR_RETURN(q.tie_word_embeddings, Field<bool>(j, "", "tie_word_embeddings"));

  const nlohmann::json w = j.value("weight", nlohmann::json());
  ASSIGN_OR_RETURN(q.weight_bits, Field<int>(w, "weight", "bits"));
  RETURN_IF_ERROR(CheckBits(q.weight_bits, "weight.bits"));
  if (q.weight_bits < 16) {
    ASSIGN_OR_RETURN(q.weight_group_size, Field<int64_t>(w, "weight", "group_size"));
    if (q.weight_group_size == 0 || q.weight_group_size < -1) {
      return Bad("weight.group_size", "must be -1 or positive");
    }
    ASSIGN_OR_RETURN(std::string packing, Field<std::string>(w, "weight", "packing"));
    if (packing != kPacking)
      return Bad("weight.packing", "is \"" + packing + "\", not " + kPacking);
  }
  const nlohmann::json a = j.value("activation", nlohmann::json());
  ASSIGN_OR_RETURN(q.activation_bits, Field<int>(a, "activation", "bits"));
  RETURN_IF_ERROR(CheckBits(q.activation_bits, "activation.bits"));
  if (q.activation_bits < 16) {
    ASSIGN_OR_RETURN(q.activation_dynamic, Mode(a, "activation"));
    ASSIGN_OR_RETURN(q.activation_clip, Field<float>(a, "activation", "clip_ratio"));
  }
  const nlohmann::json kv = j.value("kv_cache", nlohmann::json());
  ASSIGN_OR_RETURN(q.k_bits, Field<int>(kv, "kv_cache", "k_bits"));
  ASSIGN_OR_RETURN(q.v_bits, Field<int>(kv, "kv_cache", "v_bits"));
  RETURN_IF_ERROR(CheckBits(q.k_bits, "kv_cache.k_bits"));
  RETURN_IF_ERROR(CheckBits(q.v_bits, "kv_cache.v_bits"));
  if (q.k_bits < 16 || q.v_bits < 16) {
    ASSIGN_OR_RETURN(q.kv_dynamic, Mode(kv, "kv_cache"));
    ASSIGN_OR_RETURN(q.kv_group_size, Field<int64_t>(kv, "kv_cache", "group_size"));
    if (q.kv_group_size <= 0) return Bad("kv_cache.group_size", "must be positive");
  }
  const nlohmann::json r = j.value("rotation", nlohmann::json());
  ASSIGN_OR_RETURN(q.rotated, Field<bool>(r, "rotation", "applied"));
  ASSIGN_OR_RETURN(q.down_hadamard_n, HadamardOrder(r, "down_proj_online_hadamard"));
  ASSIGN_OR_RETURN(q.qk_hadamard_n, HadamardOrder(r, "qk_online_hadamard"));
  if (q.down_hadamard_n) q.down_hadamard = r.at("down_proj_online_hadamard");
  if (q.qk_hadamard_n) q.qk_hadamard = r.at("qk_online_hadamard");

  if (j.contains("prefix") && !j.at("prefix").is_null()) {
    const nlohmann::json& p = j.at("prefix");
    q.has_prefix = true;
    ASSIGN_OR_RETURN(q.prefix_ids, Field<std::vector<int32_t>>(p, "prefix", "token_ids"));
    ASSIGN_OR_RETURN(q.bos_id, Field<int32_t>(p, "prefix", "bos_id"));
    ASSIGN_OR_RETURN(q.prefix_embeddings, Field<bool>(p, "prefix", "trained_embeddings"));
    if (q.prefix_ids.empty()) return Bad("prefix.token_ids", "is empty");
  }
  return q;
}

std::vector<TensorDecl> ExpectedModelTensors(const model::LlamaConfig& c, const QuantConfig& q) {
  const model::StDType f = StDTypeOf(q.dtype);
  const int64_t d = c.hidden_size, ff = c.intermediate_size;
  const int64_t q_out = c.num_attention_heads * c.head_dim;
  const int64_t kv_out = c.num_key_value_heads * c.head_dim;
  std::vector<TensorDecl> out;
  out.push_back({"model.embed_tokens.weight", f, {c.vocab_size, d}});
  out.push_back({"model.norm.weight", f, {d}});
  if (!q.tie_word_embeddings) out.push_back({"lm_head.weight", f, {c.vocab_size, d}});
  const int64_t shapes[7][2] = {{q_out, d}, {kv_out, d}, {kv_out, d}, {d, q_out},
                                {ff, d},    {ff, d},     {d, ff}};
  for (int64_t i = 0; i < c.num_hidden_layers; ++i) {
    const std::string p = absl::StrCat("model.layers.", i, ".");
    out.push_back({p + "input_layernorm.weight", f, {d}});
    out.push_back({p + "post_attention_layernorm.weight", f, {d}});
    for (int j = 0; j < 7; ++j) {
      const std::string name = p + kProjections[j];
      const int64_t rows = shapes[j][0], cols = shapes[j][1];
      if (q.weight_bits < 16) {
        const int64_t groups = q.weight_group_size > 0 ? cols / q.weight_group_size : 1;
        out.push_back(
            {name + ".qweight", model::StDType::kU8, {rows, PackedRowBytes(cols, q.weight_bits)}});
        out.push_back({name + ".scales", model::StDType::kF32, {rows, groups}});
      } else {
        out.push_back({name + ".weight", f, {rows, cols}});
      }
      if (q.activation_bits < 16 && !q.activation_dynamic) {
        out.push_back({name + ".input_scale", model::StDType::kF32, {}});
      }
    }
    if (!q.kv_dynamic) {
      const int64_t groups = c.head_dim / std::max<int64_t>(1, q.kv_group_size);
      if (q.k_bits < 16) {
        out.push_back({p + "self_attn.k_cache_scale",
                       model::StDType::kF32,
                       {1, c.num_key_value_heads, 1, groups}});
      }
      if (q.v_bits < 16) {
        out.push_back({p + "self_attn.v_cache_scale",
                       model::StDType::kF32,
                       {1, c.num_key_value_heads, 1, groups}});
      }
    }
  }
  if (q.down_hadamard_n) {
    const int64_t k = q.down_hadamard.at("base_order").get<int64_t>();
    out.push_back(
        {"hadamard.down_proj.base",
         q.down_hadamard.value("is_hadamard", true) ? model::StDType::kI8 : model::StDType::kF32,
         {k, k}});
  }
  if (q.qk_hadamard_n) {
    const int64_t k = q.qk_hadamard.at("base_order").get<int64_t>();
    out.push_back(
        {"hadamard.qk.base",
         q.qk_hadamard.value("is_hadamard", true) ? model::StDType::kI8 : model::StDType::kF32,
         {k, k}});
  }
  return out;
}

std::vector<TensorDecl> ExpectedPrefixTensors(const model::LlamaConfig& c, const QuantConfig& q) {
  std::vector<TensorDecl> out;
  if (!q.has_prefix) return out;
  const model::StDType f = StDTypeOf(q.dtype);
  const int64_t n = static_cast<int64_t>(q.prefix_ids.size());
  out.push_back({"prefix.token_ids", model::StDType::kI32, {n}});
  out.push_back({"prefix.last_logits", model::StDType::kF32, {c.vocab_size}});
  if (q.prefix_embeddings) out.push_back({"prefix.embeddings", f, {n, c.hidden_size}});
  for (int64_t i = 0; i < c.num_hidden_layers; ++i) {
    const std::string p = absl::StrCat("prefix.layers.", i, ".");
    out.push_back({p + "key", f, {1, c.num_key_value_heads, n, c.head_dim}});
    out.push_back({p + "value", f, {1, c.num_key_value_heads, n, c.head_dim}});
  }
  return out;
}

namespace {

// Every file a load reads must be one the manifest lists (and so checks): a manifest edited
// after the export, or a file swapped in beside it, would otherwise load unchecked.
absl::Status CheckReadFilesAreListed(const std::string& dir, const nlohmann::json& manifest,
                                     const std::vector<const model::Checkpoint*>& checkpoints,
                                     const std::string& model_label) {
  std::set<std::string> listed;
  for (const auto& f : manifest.at("files")) listed.insert(f.at("name").get<std::string>());
  std::set<std::string> read = {kQuantConfigFile, "config.json", model_label};
  for (const model::Checkpoint* checkpoint : checkpoints) {
    for (const std::string& name : checkpoint->TensorNames()) {
      read.insert(fs::path(checkpoint->FileOf(name)).filename().string());
    }
  }
  for (const char* tokenizer : {"tokenizer.model", "tokenizer.json"}) {
    std::error_code error;
    if (fs::is_regular_file(fs::path(dir) / tokenizer, error)) read.insert(tokenizer);
  }
  for (const std::string& name : read) {
    if (!listed.count(name)) {
      return absl::DataLossError(absl::StrCat(name, " is not listed in ", kManifestFile,
                                              " (changed or added after the export)"));
    }
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<torch::ScalarType> ArtifactDType(const std::string& dir) {
  ASSIGN_OR_RETURN(nlohmann::json j, ReadJson(dir + "/" + kQuantConfigFile, kQuantConfigFile));
  ASSIGN_OR_RETURN(QuantConfig q, ParseQuantConfig(j));
  return q.dtype;
}

absl::StatusOr<ArtifactSummary> VerifyArtifact(const std::string& dir) {
  ArtifactSummary s;
  ASSIGN_OR_RETURN(nlohmann::json qj, ReadJson(dir + "/" + kQuantConfigFile, kQuantConfigFile));
  ASSIGN_OR_RETURN(s.quant, ParseQuantConfig(qj));
  auto manifest = ReadJson(dir + "/" + kManifestFile, kManifestFile);
  if (!manifest.ok()) {
    return absl::Status(manifest.status().code(),
                        absl::StrCat(manifest.status().message(),
                                     manifest.status().code() == absl::StatusCode::kNotFound
                                         ? ": the export did not finish"
                                         : ""));
  }
  s.manifest = *std::move(manifest);
  ASSIGN_OR_RETURN(s.config, model::LoadLlamaConfig(dir));
  const auto& c = s.config;
  if (s.quant.weight_bits < 16 && s.quant.weight_group_size > 0) {
    for (int64_t cols : {c.hidden_size, c.intermediate_size, c.num_attention_heads * c.head_dim}) {
      if (cols % s.quant.weight_group_size != 0) {
        return Bad("weight.group_size", absl::StrCat(s.quant.weight_group_size,
                                                     " does not divide the layer input ", cols));
      }
    }
  }
  if ((s.quant.k_bits < 16 || s.quant.v_bits < 16) && c.head_dim % s.quant.kv_group_size != 0) {
    return Bad("kv_cache.group_size", absl::StrCat("does not divide head_dim ", c.head_dim));
  }
  if (s.quant.down_hadamard_n && *s.quant.down_hadamard_n != c.intermediate_size) {
    return Bad("rotation.down_proj_online_hadamard.n", "differs from the intermediate size");
  }
  if (s.quant.qk_hadamard_n && *s.quant.qk_hadamard_n != c.head_dim) {
    return Bad("rotation.qk_online_hadamard.n", "differs from head_dim");
  }
  const std::string model_label = ModelFileLabel(s.quant);
  ASSIGN_OR_RETURN(auto checkpoint, model::Checkpoint::Open(dir));
  RETURN_IF_ERROR(CheckTensors(*checkpoint, ExpectedModelTensors(c, s.quant), model_label));
  std::vector<const model::Checkpoint*> read = {checkpoint.get()};
  std::unique_ptr<model::Checkpoint> prefix;
  if (s.quant.has_prefix) {
    ASSIGN_OR_RETURN(prefix, model::Checkpoint::Open(dir + "/" + kPrefixFile));
    RETURN_IF_ERROR(CheckTensors(*prefix, ExpectedPrefixTensors(c, s.quant), kPrefixFile));
    read.push_back(prefix.get());
  }
  RETURN_IF_ERROR(CheckChecksums(dir, s.manifest, &s.total_bytes));
  RETURN_IF_ERROR(CheckReadFilesAreListed(dir, s.manifest, read, model_label));
  return s;
}

absl::StatusOr<LoadedArtifact> LoadArtifact(const std::string& dir,
                                            const model::LoadOptions& options) {
  LoadedArtifact out;
  ASSIGN_OR_RETURN(out.summary, VerifyArtifact(dir));
  const QuantConfig& q = out.summary.quant;
  const model::LlamaConfig& c = out.summary.config;
  ASSIGN_OR_RETURN(auto checkpoint, model::Checkpoint::Open(dir));
  try {
    torch::NoGradGuard no_grad;
    const torch::ScalarType dtype = options.dtype;
    // Streamed blocks (options.streamed_blocks, the last ones) are read into host memory.
    torch::Device target = options.device;
    auto on_device = [&](torch::Tensor t) { return t.to(target); };
    auto load_float = [&](const std::string& name) -> absl::StatusOr<torch::Tensor> {
      ASSIGN_OR_RETURN(torch::Tensor t, checkpoint->Load(name, dtype));
      return on_device(t.clone());
    };
    auto load_stored = [&](const std::string& name) -> absl::StatusOr<torch::Tensor> {
      ASSIGN_OR_RETURN(torch::Tensor t, checkpoint->LoadStored(name));
      return on_device(t);
    };
    ASSIGN_OR_RETURN(out.model, model::LlamaModel::CreateEmpty(c, options));
    model::LlamaModel& m = *out.model;
    ASSIGN_OR_RETURN(m.embed_tokens, load_float("model.embed_tokens.weight"));
    ASSIGN_OR_RETURN(m.final_norm, load_float("model.norm.weight"));
    if (q.tie_word_embeddings) {
      m.lm_head = std::make_shared<model::DenseLinear>(m.embed_tokens);
    } else {
      ASSIGN_OR_RETURN(torch::Tensor head, load_float("lm_head.weight"));
      m.lm_head = std::make_shared<model::DenseLinear>(head);
    }
    std::optional<kernels::HadamardFactors> down_had, qk_had;
    if (q.down_hadamard_n) {
      ASSIGN_OR_RETURN(down_had, Factors(*checkpoint, q.down_hadamard, "hadamard.down_proj.base"));
    }
    if (q.qk_hadamard_n) {
      ASSIGN_OR_RETURN(qk_had, Factors(*checkpoint, q.qk_hadamard, "hadamard.qk.base"));
    }
    const int64_t kv_group = std::max<int64_t>(1, q.kv_group_size);
    for (int64_t i = 0; i < c.num_hidden_layers; ++i) {
      const std::string p = absl::StrCat("model.layers.", i, ".");
      target = options.BlockDevice(i, c.num_hidden_layers);
      model::LlamaBlock block;
      ASSIGN_OR_RETURN(block.input_norm, load_float(p + "input_layernorm.weight"));
      ASSIGN_OR_RETURN(block.post_attention_norm,
                       load_float(p + "post_attention_layernorm.weight"));
      std::shared_ptr<model::LinearLayer>* slots[] = {
          &block.q_proj,    &block.k_proj,  &block.v_proj,   &block.o_proj,
          &block.gate_proj, &block.up_proj, &block.down_proj};
      for (int j = 0; j < 7; ++j) {
        const std::string name = p + kProjections[j];
        std::shared_ptr<quant::QuantLinear> layer;
        if (q.weight_bits < 16) {
          ASSIGN_OR_RETURN(torch::Tensor packed, checkpoint->LoadStored(name + ".qweight"));
          ASSIGN_OR_RETURN(torch::Tensor scales, checkpoint->LoadStored(name + ".scales"));
          const int64_t in = j == 3   ? c.num_attention_heads * c.head_dim
                             : j == 6 ? c.intermediate_size
                                      : c.hidden_size;
          auto weight = UnpackQuantizedWeight(packed, scales, q.weight_bits, in, dtype);
          if (!weight.ok()) {
            return absl::InvalidArgumentError(
                absl::StrCat(name, ".qweight: ", weight.status().message()));
          }
          layer = std::make_shared<quant::QuantLinear>(on_device(*weight));
          layer->weight_quant.bits = q.weight_bits;
          layer->weight_quant.group_size = q.weight_group_size;
          layer->weight_quant.mse_init = q.json["weight"].value("mse_init", false);
          layer->weight_scales = on_device(scales);
        } else {
          ASSIGN_OR_RETURN(torch::Tensor weight, load_float(name + ".weight"));
          layer = std::make_shared<quant::QuantLinear>(weight);
        }
        layer->input_quantizer =
            quant::ActQuantizer(q.activation_bits, q.activation_dynamic, 0, q.activation_clip);
        if (q.activation_bits < 16 && !q.activation_dynamic) {
          ASSIGN_OR_RETURN(torch::Tensor scale, load_stored(name + ".input_scale"));
          layer->input_quantizer.set_scales(scale);
        }
        if (j == 6) layer->input_hadamard = down_had;
        *slots[j] = layer;
      }
      auto transform = std::make_shared<quant::KvTransform>();
      transform->qk_hadamard = qk_had;
      transform->k_quantizer = quant::ActQuantizer(q.k_bits, q.kv_dynamic, kv_group);
      transform->v_quantizer = quant::ActQuantizer(q.v_bits, q.kv_dynamic, kv_group);
      if (!q.kv_dynamic && q.k_bits < 16) {
        ASSIGN_OR_RETURN(torch::Tensor s, load_stored(p + "self_attn.k_cache_scale"));
        transform->k_quantizer.set_scales(s);
      }
      if (!q.kv_dynamic && q.v_bits < 16) {
        ASSIGN_OR_RETURN(torch::Tensor s, load_stored(p + "self_attn.v_cache_scale"));
        transform->v_quantizer.set_scales(s);
      }
      block.attention_transform = transform;
      m.blocks.push_back(std::move(block));
    }
    target = options.device;
    RETURN_IF_ERROR(m.StreamLastBlocks(options.streamed_blocks, model::DeviceTransfer(target)));
    if (q.has_prefix) {
      ASSIGN_OR_RETURN(auto prefix_file, model::Checkpoint::Open(dir + "/" + kPrefixFile));
      quant::PrefixCache prefix;
      ASSIGN_OR_RETURN(torch::Tensor ids, prefix_file->LoadStored("prefix.token_ids"));
      prefix.ids.assign(ids.data_ptr<int32_t>(), ids.data_ptr<int32_t>() + ids.numel());
      if (prefix.ids != q.prefix_ids) {
        return absl::InvalidArgumentError(absl::StrCat(kPrefixFile,
                                                       ": prefix.token_ids differ from ",
                                                       kQuantConfigFile, "'s prefix.token_ids"));
      }
      prefix.bos_id = q.bos_id;
      ASSIGN_OR_RETURN(torch::Tensor logits, prefix_file->LoadStored("prefix.last_logits"));
      prefix.last_logits = on_device(logits);
      for (int64_t i = 0; i < c.num_hidden_layers; ++i) {
        const std::string p = absl::StrCat("prefix.layers.", i, ".");
        model::LayerKv kv;
        ASSIGN_OR_RETURN(kv.k, prefix_file->Load(p + "key", dtype));
        ASSIGN_OR_RETURN(kv.v, prefix_file->Load(p + "value", dtype));
        kv.k = on_device(kv.k.clone());
        kv.v = on_device(kv.v.clone());
        prefix.kv.layers.push_back(std::move(kv));
      }
      out.prefix = std::move(prefix);
    }
  } catch (const std::exception& e) {
    return absl::InternalError(absl::StrCat("loading the export in ", dir, ": ", e.what()));
  }
  return out;
}

}  // namespace quantd::exporter
