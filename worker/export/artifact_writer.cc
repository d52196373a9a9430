#include "worker/export/artifact_writer.h"

#include <fcntl.h>
#include <stdio.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <functional>
#include <set>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "proto/common/status_macros.h"
#include "worker/export/artifact_format.h"
#include "worker/export/bit_pack.h"
#include "worker/export/tensor_io.h"
#include "worker/export/weight_codec.h"
#include "worker/model/dtype_names.h"
#include "worker/quant/kv_transform.h"
#include "worker/quant/quant_linear.h"

namespace quantd::exporter {
namespace {

namespace fs = std::filesystem;

struct Planned {
  TensorDecl decl;
  std::function<absl::StatusOr<torch::Tensor>()> make;  // a CPU tensor of decl's bytes
};

// Plans `tensor` as it is (cast to `dtype`, moved to the CPU at write time).
Planned Plain(const std::string& name, const torch::Tensor& tensor, torch::ScalarType dtype) {
  Planned p;
  p.decl.name = name;
  p.decl.dtype = StDTypeOf(dtype);
  p.decl.shape = tensor.sizes().vec();
  p.make = [tensor, dtype]() -> absl::StatusOr<torch::Tensor> {
    return tensor.detach().to(torch::kCPU, dtype).contiguous();
  };
  return p;
}

nlohmann::json HadamardJson(const std::optional<kernels::HadamardFactors>& f) {
  if (!f) return nullptr;
  return {{"n", f->n},
          {"base_order", f->base_order},
          {"log2_pow2", f->log2_pow2},
          {"is_hadamard", f->is_hadamard},
          {"construction", f->construction}};
}

// A ±1 base (every direct construction) is stored as I8, the random fallback as F32.
Planned HadamardBase(const std::string& name, const kernels::HadamardFactors& f) {
  torch::Tensor base = torch::tensor(f.base, torch::kFloat32).view({f.base_order, f.base_order});
  return f.is_hadamard ? Plain(name, base, torch::kInt8) : Plain(name, base, torch::kFloat32);
}

const char* ModeName(bool dynamic) { return dynamic ? "dynamic" : "static"; }

// The uniform settings of the model's quantized layers, and the tensors that carry them.
class Planner {
 public:
  explicit Planner(const ArtifactModel& artifact) : a_(artifact), m_(*artifact.model) {}

  absl::Status Plan() {
    dtype_ = m_.dtype();
    const auto& c = m_.config();
    tied_ = m_.lm_head != nullptr && [&] {
      auto* dense = dynamic_cast<model::DenseLinear*>(m_.lm_head.get());
      return dense != nullptr && dense->weight.is_same(m_.embed_tokens);
    }();
    if (!tied_ && dynamic_cast<model::DenseLinear*>(m_.lm_head.get()) == nullptr) {
      return absl::FailedPreconditionError("export: lm_head is not a DenseLinear");
    }
    model_.push_back(Plain("model.embed_tokens.weight", m_.embed_tokens, dtype_));
    model_.push_back(Plain("model.norm.weight", m_.final_norm, dtype_));
    if (!tied_) {
      model_.push_back(Plain("lm_head.weight",
                             static_cast<model::DenseLinear*>(m_.lm_head.get())->weight, dtype_));
    }
    for (int64_t i = 0; i < c.num_hidden_layers; ++i) {
      RETURN_IF_ERROR(PlanBlock(static_cast<int>(i)));
    }
    if (down_had_) model_.push_back(HadamardBase("hadamard.down_proj.base", *down_had_));
    if (qk_had_) model_.push_back(HadamardBase("hadamard.qk.base", *qk_had_));
    if (a_.prefix != nullptr) PlanPrefix();
    return absl::OkStatus();
  }

  nlohmann::json QuantConfig() const {
    nlohmann::json j;
    j["format"] = kFormatName;
    j["format_version"] = kFormatVersion;
    j["dtype"] = model::DTypeName(dtype_);
    j["tie_word_embeddings"] = tied_;
    j["weight"] = {{"bits", weight_bits_},
                   {"group_size", weight_group_},
                   {"mse_init", mse_init_},
                   {"packing", kPacking}};
    j["activation"] = {
        {"bits", act_bits_}, {"mode", ModeName(act_dynamic_)}, {"clip_ratio", clip_}};
    j["kv_cache"] = {{"k_bits", k_bits_},
                     {"v_bits", v_bits_},
                     {"group_size", kv_group_},
                     {"mode", ModeName(kv_dynamic_)}};
    j["rotation"] = {
        {"applied", a_.rotated},
        {"mode", a_.rotation.mode == quant::RotationOptions::Mode::kRandom ? "random" : "hadamard"},
        {"seed", a_.rotation.seed},
        {"down_proj_online_hadamard", HadamardJson(down_had_)},
        {"qk_online_hadamard", HadamardJson(qk_had_)}};
    if (a_.prefix != nullptr) {
      j["prefix"] = {{"token_ids", a_.prefix->ids},
                     {"bos_id", a_.prefix->bos_id},
                     {"length", a_.prefix->ids.size()},
                     {"trained_embeddings", a_.prefix_embeddings.defined()}};
    } else {
      j["prefix"] = nullptr;
    }
    j["files"] = {{"model", "model.safetensors"},
                  {"prefix", a_.prefix != nullptr ? nlohmann::json(kPrefixFile) : nullptr}};
    return j;
  }

  std::vector<Planned>& model_tensors() { return model_; }
  std::vector<Planned>& prefix_tensors() { return prefix_; }

 private:
  // Records a per-layer setting; FAILED_PRECONDITION when a later layer differs.
  template <typename T>
  absl::Status Uniform(T* slot, bool* seen, T value, const std::string& what) {
    if (*seen && !(*slot == value)) {
      return absl::FailedPreconditionError(
          absl::StrCat("export: ", what, " differs between layers; the format needs one value"));
    }
    *slot = value;
    *seen = true;
    return absl::OkStatus();
  }

  absl::Status PlanLinear(const std::string& name, const std::shared_ptr<model::LinearLayer>& l,
                          bool is_down) {
    torch::Tensor weight;
    int bits = 16;
    int64_t group = -1;
    bool mse = false;
    torch::Tensor scales;
    const quant::ActQuantizer* input = nullptr;
    std::optional<kernels::HadamardFactors> had;
    if (auto* q = dynamic_cast<quant::QuantLinear*>(l.get())) {
      weight = q->weight;
      bits = quant::QuantEnabled(q->weight_quant.bits) ? q->weight_quant.bits : 16;
      group = q->weight_quant.group_size;
      mse = q->weight_quant.mse_init;
      scales = q->weight_scales;
      input = &q->input_quantizer;
      had = q->input_hadamard;
    } else if (auto* d = dynamic_cast<model::DenseLinear*>(l.get())) {
      if (d->bias.defined())
        return absl::FailedPreconditionError("export: " + name + " has a bias");
      weight = d->weight;
    } else {
      return absl::FailedPreconditionError("export: " + name + " is not a QuantLinear");
    }
    if (had && !is_down) {
      return absl::FailedPreconditionError("export: " + name + " has an online Hadamard");
    }
    if (is_down) {
      RETURN_IF_ERROR(Uniform(&down_had_on_, &down_had_seen_, had.has_value(),
                              "the down_proj online Hadamard"));
      if (had && !down_had_) down_had_ = had;
    }
    RETURN_IF_ERROR(Uniform(&weight_bits_, &wb_seen_, bits, "weight bits"));
    if (bits < 16) {
      RETURN_IF_ERROR(Uniform(&weight_group_, &wg_seen_, group, "weight group size"));
      RETURN_IF_ERROR(Uniform(&mse_init_, &mse_seen_, mse, "mse_init"));
      if (!scales.defined()) {
        return absl::FailedPreconditionError("export: " + name + " has no weight scales");
      }
      Planned p;
      p.decl = {name + ".qweight",
                model::StDType::kU8,
                {weight.size(0), PackedRowBytes(weight.size(1), bits)}};
      p.make = [weight, scales, bits, name]() -> absl::StatusOr<torch::Tensor> {
        auto packed = PackQuantizedWeight(weight, scales, bits);
        if (!packed.ok()) {
          return absl::Status(packed.status().code(),
                              absl::StrCat("export: ", name, ": ", packed.status().message()));
        }
        return packed;
      };
      model_.push_back(std::move(p));
      model_.push_back(Plain(name + ".scales", scales, torch::kFloat32));
    } else {
      model_.push_back(Plain(name + ".weight", weight, dtype_));
    }
    const int abits = input != nullptr && quant::QuantEnabled(input->bits()) ? input->bits() : 16;
    RETURN_IF_ERROR(Uniform(&act_bits_, &ab_seen_, abits, "activation bits"));
    if (abits < 16) {
      RETURN_IF_ERROR(Uniform(&act_dynamic_, &ad_seen_, input->dynamic(), "activation mode"));
      RETURN_IF_ERROR(Uniform(&clip_, &clip_seen_, input->clip_ratio(), "activation clip ratio"));
      if (!input->dynamic()) {
        if (!input->calibrated()) {
          return absl::FailedPreconditionError("export: " + name +
                                               ": static input scale not calibrated");
        }
        model_.push_back(Plain(name + ".input_scale", input->scales(), torch::kFloat32));
      }
    }
    return absl::OkStatus();
  }

  absl::Status PlanBlock(int i) {
    const auto& b = m_.blocks[i];
    const std::string p = absl::StrCat("model.layers.", i, ".");
    model_.push_back(Plain(p + "input_layernorm.weight", b.input_norm, dtype_));
    model_.push_back(Plain(p + "post_attention_layernorm.weight", b.post_attention_norm, dtype_));
    const std::shared_ptr<model::LinearLayer>* layers[] = {
        &b.q_proj, &b.k_proj, &b.v_proj, &b.o_proj, &b.gate_proj, &b.up_proj, &b.down_proj};
    for (int j = 0; j < 7; ++j) {
      RETURN_IF_ERROR(PlanLinear(p + kProjections[j], *layers[j], j == 6));
    }
    auto* t = dynamic_cast<quant::KvTransform*>(b.attention_transform.get());
    if (b.attention_transform != nullptr && t == nullptr) {
      return absl::FailedPreconditionError(
          absl::StrCat("export: layer ", i, " has an attention transform that is not KvTransform"));
    }
    const bool qk = t != nullptr && t->qk_hadamard.has_value();
    RETURN_IF_ERROR(Uniform(&qk_had_on_, &qk_seen_, qk, "the q/k online Hadamard"));
    if (qk && !qk_had_) qk_had_ = t->qk_hadamard;
    const quant::ActQuantizer none;
    const quant::ActQuantizer& kq = t != nullptr ? t->k_quantizer : none;
    const quant::ActQuantizer& vq = t != nullptr ? t->v_quantizer : none;
    const int kb = quant::QuantEnabled(kq.bits()) ? kq.bits() : 16;
    const int vb = quant::QuantEnabled(vq.bits()) ? vq.bits() : 16;
    RETURN_IF_ERROR(Uniform(&k_bits_, &kb_seen_, kb, "k bits"));
    RETURN_IF_ERROR(Uniform(&v_bits_, &vb_seen_, vb, "v bits"));
    for (const auto* q : {&kq, &vq}) {
      if (!quant::QuantEnabled(q->bits())) continue;
      RETURN_IF_ERROR(Uniform(&kv_dynamic_, &kvd_seen_, q->dynamic(), "KV mode"));
      RETURN_IF_ERROR(Uniform(&kv_group_, &kvg_seen_, q->group_size(), "KV group size"));
      if (!q->dynamic()) {
        if (!q->calibrated()) {
          return absl::FailedPreconditionError(
              absl::StrCat("export: layer ", i, ": static KV scale not calibrated"));
        }
        model_.push_back(
            Plain(p + (q == &kq ? "self_attn.k_cache_scale" : "self_attn.v_cache_scale"),
                  q->scales(), torch::kFloat32));
      }
    }
    return absl::OkStatus();
  }

  void PlanPrefix() {
    const quant::PrefixCache& pc = *a_.prefix;
    torch::Tensor ids = torch::tensor(pc.ids, torch::kInt32);
    prefix_.push_back(Plain("prefix.token_ids", ids, torch::kInt32));
    prefix_.push_back(Plain("prefix.last_logits", pc.last_logits, torch::kFloat32));
    if (a_.prefix_embeddings.defined()) {
      prefix_.push_back(Plain("prefix.embeddings", a_.prefix_embeddings, dtype_));
    }
    for (size_t i = 0; i < pc.kv.layers.size(); ++i) {
      const std::string p = absl::StrCat("prefix.layers.", i, ".");
      prefix_.push_back(Plain(p + "key", pc.kv.layers[i].k, dtype_));
      prefix_.push_back(Plain(p + "value", pc.kv.layers[i].v, dtype_));
    }
  }

  const ArtifactModel& a_;
  const model::LlamaModel& m_;
  torch::ScalarType dtype_ = torch::kFloat32;
  bool tied_ = false;
  std::vector<Planned> model_, prefix_;
  int weight_bits_ = 16, act_bits_ = 16, k_bits_ = 16, v_bits_ = 16;
  int64_t weight_group_ = -1, kv_group_ = 0;
  bool mse_init_ = false, act_dynamic_ = true, kv_dynamic_ = true;
  float clip_ = 1.0f;
  bool down_had_on_ = false, qk_had_on_ = false;
  std::optional<kernels::HadamardFactors> down_had_, qk_had_;
  bool wb_seen_ = false, wg_seen_ = false, mse_seen_ = false, ab_seen_ = false, ad_seen_ = false,
       clip_seen_ = false, kb_seen_ = false, vb_seen_ = false, kvd_seen_ = false, kvg_seen_ = false,
       down_had_seen_ = false, qk_seen_ = false;
};

absl::Status WriteTensors(std::vector<Planned>& planned, ShardedSafetensorsWriter& writer) {
  for (Planned& p : planned) {
    ASSIGN_OR_RETURN(torch::Tensor t, p.make());
    RETURN_IF_ERROR(writer.Write(p.decl.name, t.data_ptr(), t.numel() * t.element_size()));
    p.make = nullptr;  // drops the captured tensors as soon as they are written
  }
  return absl::OkStatus();
}

std::vector<TensorDecl> Decls(const std::vector<Planned>& planned) {
  std::vector<TensorDecl> out;
  for (const Planned& p : planned) out.push_back(p.decl);
  return out;
}

bool IsModelSideFile(const std::string& name) {
  return name == "config.json" || name == "generation_config.json" ||
         name == "special_tokens_map.json" || absl::StartsWith(name, "tokenizer");
}

absl::StatusOr<WrittenFile> CopyFile(const std::string& from, const std::string& dir) {
  const std::string name = fs::path(from).filename().string();
  std::error_code error;
  fs::copy_file(from, dir + "/" + name, fs::copy_options::overwrite_existing, error);
  if (error) {
    return absl::InternalError(absl::StrCat("copying ", from, " to ", dir, ": ", error.message()));
  }
  WrittenFile file;
  file.name = name;
  file.bytes = fs::file_size(dir + "/" + name, error);
  ASSIGN_OR_RETURN(file.sha256, Sha256OfFile(dir + "/" + name));
  return file;
}

}  // namespace

absl::StatusOr<std::vector<WrittenFile>> WriteArtifactFiles(const ArtifactModel& artifact,
                                                            const std::string& staging_dir,
                                                            uint64_t max_shard_bytes) {
  if (artifact.model == nullptr) return absl::InvalidArgumentError("export: no model");
  if (!fs::exists(artifact.source_model_dir + "/config.json")) {
    return absl::NotFoundError("export: no config.json in " + artifact.source_model_dir);
  }
  std::error_code error;
  if (fs::exists(staging_dir, error)) {
    return absl::FailedPreconditionError("export: " + staging_dir + " already exists");
  }
  if (!fs::create_directory(staging_dir, error)) {
    return absl::InternalError(
        absl::StrCat("export: cannot create ", staging_dir, ": ", error.message()));
  }
  torch::NoGradGuard no_grad;
  Planner planner(artifact);
  try {
    RETURN_IF_ERROR(planner.Plan());
  } catch (const std::exception& e) {
    return absl::InternalError(absl::StrCat("export: ", e.what()));
  }
  std::vector<WrittenFile> files;
  try {
    const std::map<std::string, std::string> metadata = {{"format", kFormatName},
                                                         {"format_version", "1"}};
    ASSIGN_OR_RETURN(auto model_writer, ShardedSafetensorsWriter::Create(
                                            staging_dir, "model", Decls(planner.model_tensors()),
                                            max_shard_bytes, metadata));
    RETURN_IF_ERROR(WriteTensors(planner.model_tensors(), *model_writer));
    ASSIGN_OR_RETURN(std::vector<WrittenFile> written, model_writer->Finish());
    files.insert(files.end(), written.begin(), written.end());
    nlohmann::json config = planner.QuantConfig();
    if (written.size() > 1) config["files"]["model"] = written.back().name;  // the index
    if (artifact.prefix != nullptr) {
      ASSIGN_OR_RETURN(auto prefix_writer,
                       SafetensorsWriter::Create(staging_dir + "/" + kPrefixFile,
                                                 Decls(planner.prefix_tensors()), metadata));
      for (Planned& p : planner.prefix_tensors()) {
        ASSIGN_OR_RETURN(torch::Tensor t, p.make());
        RETURN_IF_ERROR(
            prefix_writer->Write(p.decl.name, t.data_ptr(), t.numel() * t.element_size()));
      }
      ASSIGN_OR_RETURN(WrittenFile prefix_file, prefix_writer->Finish());
      files.push_back(prefix_file);
    }
    ASSIGN_OR_RETURN(WrittenFile qc,
                     WriteTextFile(staging_dir + "/" + kQuantConfigFile, config.dump(2) + "\n"));
    files.push_back(qc);
  } catch (const std::exception& e) {
    return absl::InternalError(absl::StrCat("export: ", e.what()));
  }
  for (const auto& entry : fs::directory_iterator(artifact.source_model_dir, error)) {
    const std::string name = entry.path().filename().string();
    if (entry.is_regular_file() && IsModelSideFile(name)) {
      ASSIGN_OR_RETURN(WrittenFile copied, CopyFile(entry.path().string(), staging_dir));
      files.push_back(copied);
    }
  }
  if (error) {
    return absl::InternalError(
        absl::StrCat("export: listing ", artifact.source_model_dir, ": ", error.message()));
  }
  return files;
}

absl::Status WriteManifest(const std::string& staging_dir, nlohmann::json manifest,
                           const std::vector<WrittenFile>& files) {
  manifest["format"] = kFormatName;
  manifest["format_version"] = kFormatVersion;
  nlohmann::json list = nlohmann::json::array();
  for (const WrittenFile& f : files) {
    list.push_back({{"name", f.name}, {"bytes", f.bytes}, {"sha256", f.sha256}});
  }
  manifest["files"] = list;
  ASSIGN_OR_RETURN(WrittenFile unused,
                   WriteTextFile(staging_dir + "/" + kManifestFile, manifest.dump(2) + "\n"));
  (void)unused;
  return absl::OkStatus();
}

std::string StagingDirFor(const std::string& final_dir) {
  std::string base = final_dir;
  while (base.size() > 1 && base.back() == '/') base.pop_back();
  return absl::StrCat(base, ".tmp-", ::getpid());
}

absl::Status CommitArtifact(const std::string& staging_dir, const std::string& final_dir) {
  std::error_code error;
  std::string old;
  if (fs::exists(final_dir, error)) {
    const bool replaceable =
        fs::is_directory(final_dir, error) &&
        (fs::is_empty(final_dir, error) || IsReplaceableArtifactDir(final_dir));
    if (!replaceable) {
      return absl::FailedPreconditionError(
          absl::StrCat("export: ", final_dir,
                       " exists and is not an earlier export; it is left alone (the "
                       "export stays in ",
                       staging_dir, ")"));
    }
    // One atomic exchange: at every moment final_dir is the earlier export or the new one
    // (two renames left a window in which a kill lost final_dir). The staging name then holds
    // the earlier export, which is removed.
    if (::renameat2(AT_FDCWD, staging_dir.c_str(), AT_FDCWD, final_dir.c_str(), RENAME_EXCHANGE) ==
        0) {
      fs::remove_all(staging_dir, error);
      return absl::OkStatus();
    }
    if (errno != EINVAL && errno != ENOSYS) {  // other than "this file system cannot"
      return absl::InternalError(absl::StrCat("export: exchanging ", staging_dir, " and ",
                                              final_dir, ": ", std::strerror(errno)));
    }
    old = absl::StrCat(StagingDirFor(final_dir), ".old");
    fs::rename(final_dir, old, error);
    if (error) {
      return absl::InternalError(
          absl::StrCat("export: moving the earlier ", final_dir, " aside: ", error.message()));
    }
  }
  fs::rename(staging_dir, final_dir, error);
  if (error) {
    return absl::InternalError(
        absl::StrCat("export: renaming ", staging_dir, " to ", final_dir, ": ", error.message()));
  }
  if (!old.empty()) fs::remove_all(old, error);
  return absl::OkStatus();
}

absl::StatusOr<nlohmann::json> DescribeInputModel(const std::string& model_dir) {
  nlohmann::json files = nlohmann::json::array();
  uint64_t safetensors_bytes = 0;
  std::error_code error;
  std::vector<fs::path> paths;
  for (const auto& entry : fs::directory_iterator(model_dir, error)) {
    const std::string name = entry.path().filename().string();
    if (entry.is_regular_file() && (IsModelSideFile(name) || absl::EndsWith(name, ".safetensors") ||
                                    absl::EndsWith(name, ".safetensors.index.json"))) {
      paths.push_back(entry.path());
    }
  }
  if (error) {
    return absl::NotFoundError(absl::StrCat("listing ", model_dir, ": ", error.message()));
  }
  std::sort(paths.begin(), paths.end());
  for (const fs::path& path : paths) {
    const uint64_t bytes = fs::file_size(path, error);
    ASSIGN_OR_RETURN(std::string sha, Sha256OfFile(path.string()));
    if (absl::EndsWith(path.string(), ".safetensors")) safetensors_bytes += bytes;
    files.push_back({{"name", path.filename().string()}, {"bytes", bytes}, {"sha256", sha}});
  }
  return nlohmann::json{
      {"path", model_dir}, {"files", files}, {"safetensors_bytes", safetensors_bytes}};
}

}  // namespace quantd::exporter
