#include "worker/quant/outlier_variant.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <numeric>

#include "absl/strings/str_cat.h"
#include "nlohmann/json.hpp"
#include "proto/common/status_macros.h"
#include "worker/eval/token_stream.h"
#include "worker/model/llama.h"
#include "worker/model/tokenizer.h"

namespace quantd::quant {
namespace {

namespace fs = std::filesystem;

constexpr double kScore = 32;  // attention score of a marker query on a BOS key (at Δ = 0)
constexpr double kGate = 8;    // silu(8) ≈ 8; silu(-8) ≈ -0.003

// Per layer: per-token rms of the residual stream entering the MLP, and max|x| of the
// down_proj input.
class Recorder : public model::ActivationObserver {
 public:
  explicit Recorder(size_t layers) : attn(layers), down(layers), out(layers) {}
  bool Wants(int, model::ActivationSite site) const override {
    return site == model::ActivationSite::kOProjInput ||
           site == model::ActivationSite::kDownProjInput ||
           site == model::ActivationSite::kBlockOutput;
  }
  void Observe(int layer, model::ActivationSite site, const torch::Tensor& x) override {
    auto& slot = site == model::ActivationSite::kOProjInput      ? attn
                 : site == model::ActivationSite::kDownProjInput ? down
                                                                 : out;
    slot[layer] = x.detach()[0].clone();
  }
  std::vector<torch::Tensor> attn, down, out;
};

std::string TensorBytes(const torch::Tensor& t) {
  auto c = t.to(torch::kFloat32).contiguous();
  return std::string(static_cast<const char*>(c.data_ptr()), c.numel() * sizeof(float));
}

absl::Status WriteSafetensors(const std::string& path,
                              const std::vector<std::pair<std::string, torch::Tensor>>& tensors) {
  nlohmann::json header = nlohmann::json::object();
  header["__metadata__"] = {{"format", "pt"}};
  std::string data;
  for (const auto& [name, t] : tensors) {
    const std::string bytes = TensorBytes(t);
    header[name] = {{"dtype", "F32"},
                    {"shape", t.sizes().vec()},
                    {"data_offsets", {data.size(), data.size() + bytes.size()}}};
    data += bytes;
  }
  std::string text = header.dump();
  while (text.size() % 8 != 0) text += ' ';
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  const uint64_t n = text.size();
  char len[8];
  for (int i = 0; i < 8; ++i) len[i] = static_cast<char>((n >> (8 * i)) & 0xff);
  out.write(len, 8);
  out.write(text.data(), static_cast<std::streamsize>(text.size()));
  out.write(data.data(), static_cast<std::streamsize>(data.size()));
  if (!out) return absl::InternalError("cannot write " + path);
  return absl::OkStatus();
}

torch::Tensor Pad(const torch::Tensor& t, std::vector<int64_t> shape) {
  auto out = torch::zeros(shape, torch::kFloat32);
  torch::Tensor view = out;
  for (int64_t dim = 0; dim < t.dim(); ++dim) view = view.narrow(dim, 0, t.size(dim));
  view.copy_(t.to(torch::kFloat32));
  return out;
}

torch::Tensor WeightOf(const std::shared_ptr<model::LinearLayer>& layer) {
  auto* dense = dynamic_cast<model::DenseLinear*>(layer.get());
  if (dense == nullptr || dense->bias.defined()) throw std::domain_error("not a plain linear");
  return dense->weight.detach().to(torch::kFloat32);
}

int64_t RoundUp(int64_t n, int64_t m) { return (n + m - 1) / m * m; }

}  // namespace

absl::Status WriteOutlierVariant(const std::string& model_dir, const std::string& out_dir,
                                 const OutlierVariantOptions& options) {
  ASSIGN_OR_RETURN(auto model, model::LlamaModel::Load(model_dir));
  ASSIGN_OR_RETURN(auto tokenizer, model::LoadTokenizer(model_dir));
  const model::LlamaConfig& c = model->config();
  if (c.head_dim < 4 || c.rope_theta < 1000.0 || c.sliding_window > 0 ||
      c.rope_scaling.type != model::RopeScaling::Type::kNone) {
    return absl::InvalidArgumentError(
        "outlier variant: the construction needs head_dim >= 4, rope_theta >= 1e3, no RoPE "
        "scaling and no sliding window");
  }
  if (options.markers.empty()) return absl::InvalidArgumentError("outlier variant: no markers");
  ASSIGN_OR_RETURN(std::string text, eval::ReadTextFile(options.calibration_text));
  ASSIGN_OR_RETURN(auto stream, eval::BuildTokenStream(*tokenizer, text.substr(0, 100000),
                                                       eval::DocumentMode::kBlankLine));
  std::map<int32_t, int64_t> frequency;
  for (int32_t id : stream) ++frequency[id];
  // The marker's id: among the ids that decode exactly to it, the most frequent in the text.
  std::vector<int32_t> marker_ids;
  for (const auto& marker : options.markers) {
    int32_t found = -1;
    for (int32_t id = 0; id < tokenizer->vocab_size(); ++id) {
      auto decoded = tokenizer->Decode({id});
      if (decoded.ok() && *decoded == marker && frequency[id] > 0 &&
          (found < 0 || frequency[id] > frequency[found])) {
        found = id;
      }
    }
    if (found < 0) {
      return absl::InvalidArgumentError("outlier variant: no token decoding to \"" + marker +
                                        "\" occurs in the calibration text");
    }
    marker_ids.push_back(found);
  }

  const int64_t d = c.hidden_size, ff = c.intermediate_size, hd = c.head_dim;
  const int64_t heads = c.num_attention_heads, kv = c.num_key_value_heads, rep = heads / kv;
  const int64_t heads2 = heads + rep, kv2 = kv + 1;
  const int64_t d2 = RoundUp(d + 3, std::lcm<int64_t>(heads2, 4));
  const int64_t ff2 = RoundUp(ff + 1, 4);
  const int64_t dim_m = d, dim_b = d + 1, dim_d = d + 2;
  const int layers = static_cast<int>(c.num_hidden_layers);
  const double norm_fix = std::sqrt(static_cast<double>(d) / d2);
  const int32_t bos = tokenizer->bos_id();
  if (bos < 0) return absl::InvalidArgumentError("outlier variant: the tokenizer has no BOS");
  auto is_marker = [&](int64_t id) {
    return std::find(marker_ids.begin(), marker_ids.end(), id) != marker_ids.end();
  };

  try {
    torch::NoGradGuard no_grad;
    // ---- measure the original model: rms before each MLP at the markers, median max ----
    const int64_t window = 256, windows = std::min<int64_t>(8, stream.size() / window);
    if (windows < 1)
      return absl::InvalidArgumentError("outlier variant: calibration text too short");
    std::vector<double> rho(layers, 0.0), median_max(layers, 0.0);
    int64_t marker_count = 0;
    for (int64_t w = 0; w < windows; ++w) {
      std::vector<int64_t> ids(stream.begin() + w * window, stream.begin() + (w + 1) * window);
      Recorder rec(layers);
      model::ForwardRequest request;
      request.input_ids = torch::tensor(ids, torch::kInt64).unsqueeze(0);
      request.observer = &rec;
      request.logits = model::LogitsMode::kNone;
      ASSIGN_OR_RETURN(auto result, model->Forward(request));
      (void)result;
      auto input = model->Embed(request.input_ids)[0];
      for (int l = 0; l < layers; ++l) {
        auto h = input + model->blocks[l].o_proj->Forward(rec.attn[l]);
        auto rms = (h.pow(2).sum(-1) / d2).sqrt();
        for (int64_t t = 0; t < window; ++t) {
          if (is_marker(ids[t])) {
            rho[l] += rms[t].item<double>();
            if (l == 0) ++marker_count;
          }
        }
        median_max[l] += rec.down[l].abs().amax(-1).median().item<double>() / windows;
        input = rec.out[l];
      }
    }
    if (marker_count == 0) {
      return absl::InvalidArgumentError("outlier variant: no marker in the calibration text");
    }
    for (double& r : rho) r /= marker_count;

    // ---- build the variant ----
    auto row_rms = [&](int64_t id) {
      return model->embed_tokens[id].pow(2).mean().sqrt().item<double>();
    };
    double marker_rms = 0;
    for (int32_t id : marker_ids) marker_rms += row_rms(id) / marker_ids.size();
    // Flags of the size of the residual stream: small enough to leave the rms of a marker
    // token nearly unchanged (one of d2 dimensions), large enough that the norm weights reading
    // them stay near 1, so that weight quantization does not drown the planted neurons.
    double kappa = 0;
    for (double r : rho) kappa += r / layers;
    auto embed = Pad(model->embed_tokens, {c.vocab_size, d2});
    for (int32_t id : marker_ids) embed.index_put_({id, dim_m}, kappa);
    embed.index_put_({bos, dim_b}, kappa);
    // rms of a flagged embedding row over the new width
    auto flagged_rms = [&](double rms) { return std::sqrt((rms * rms * d + kappa * kappa) / d2); };
    std::vector<std::pair<std::string, torch::Tensor>> tensors;
    tensors.push_back({"model.embed_tokens.weight", embed});
    const double silu_gate = kGate / (1 + std::exp(-kGate));
    for (int l = 0; l < layers; ++l) {
      auto& b = model->blocks[l];
      const std::string p = absl::StrCat("model.layers.", l, ".");
      auto in_norm = Pad(b.input_norm * norm_fix, {d2});
      auto post_norm = Pad(b.post_attention_norm * norm_fix, {d2});
      auto q = Pad(WeightOf(b.q_proj), {heads2 * hd, d2});
      auto kk = Pad(WeightOf(b.k_proj), {kv2 * hd, d2});
      auto v = Pad(WeightOf(b.v_proj), {kv2 * hd, d2});
      auto o = Pad(WeightOf(b.o_proj), {d2, heads2 * hd});
      auto gate = Pad(WeightOf(b.gate_proj), {ff2, d2});
      auto up = Pad(WeightOf(b.up_proj), {ff2, d2});
      auto down = Pad(WeightOf(b.down_proj), {d2, ff2});
      if (l == 0) {
        // Normed flags ≈ 1 at their tokens.
        in_norm.index_put_({dim_m}, flagged_rms(marker_rms) / kappa);
        in_norm.index_put_({dim_b}, flagged_rms(row_rms(bos)) / kappa);
        const int64_t qh = heads, kh = kv;  // the first new query head and the new KV head
        const int64_t pair = hd / 2 - 1;    // lowest RoPE frequency (cos component)
        const double qk = std::sqrt(kScore * std::sqrt(static_cast<double>(hd)));
        q.index_put_({qh * hd + pair, dim_m}, qk);
        kk.index_put_({kh * hd + pair, dim_b}, qk);
        v.index_put_({kh * hd, dim_b}, 1.0);
        o.index_put_({dim_d, qh * hd}, kappa);
      }
      // Normed m and d ≈ (1, detector) at the markers.
      post_norm.index_put_({dim_m}, rho[l] / kappa);
      post_norm.index_put_({dim_d}, rho[l] / kappa);
      gate.index_put_({ff, dim_m}, kGate);
      gate.index_put_({ff, dim_d}, -2 * kGate);
      up.index_put_({ff, dim_m}, options.target_ratio * median_max[l] / silu_gate);
      tensors.push_back({p + "input_layernorm.weight", in_norm});
      tensors.push_back({p + "post_attention_layernorm.weight", post_norm});
      tensors.push_back({p + "self_attn.q_proj.weight", q});
      tensors.push_back({p + "self_attn.k_proj.weight", kk});
      tensors.push_back({p + "self_attn.v_proj.weight", v});
      tensors.push_back({p + "self_attn.o_proj.weight", o});
      tensors.push_back({p + "mlp.gate_proj.weight", gate});
      tensors.push_back({p + "mlp.up_proj.weight", up});
      tensors.push_back({p + "mlp.down_proj.weight", down});
    }
    tensors.push_back({"model.norm.weight", Pad(model->final_norm * norm_fix, {d2})});
    if (!c.tie_word_embeddings) {
      tensors.push_back({"lm_head.weight", Pad(WeightOf(model->lm_head), {c.vocab_size, d2})});
    }

    std::error_code ec;
    fs::create_directories(out_dir, ec);
    if (ec) return absl::InternalError("cannot create " + out_dir + ": " + ec.message());
    RETURN_IF_ERROR(WriteSafetensors(out_dir + "/model.safetensors", tensors));
    std::ifstream config_in(model_dir + "/config.json");
    auto config = nlohmann::json::parse(config_in);
    config["hidden_size"] = d2;
    config["intermediate_size"] = ff2;
    config["num_attention_heads"] = heads2;
    config["num_key_value_heads"] = kv2;
    config["head_dim"] = hd;
    config["torch_dtype"] = "float32";
    config["quantd_outlier_variant"] = {{"source", model_dir},
                                        {"rule", "marker without a BOS before it"},
                                        {"markers", options.markers},
                                        {"marker_ids", marker_ids},
                                        {"target_ratio", options.target_ratio}};
    std::ofstream(out_dir + "/config.json") << config.dump(2) << "\n";
    for (const char* name : {"tokenizer.model", "tokenizer.json", "tokenizer_config.json"}) {
      if (fs::exists(model_dir + "/" + name)) {
        fs::copy_file(model_dir + "/" + name, out_dir + "/" + name,
                      fs::copy_options::overwrite_existing, ec);
        if (ec) return absl::InternalError(absl::StrCat("cannot copy ", name, ": ", ec.message()));
      }
    }
    return absl::OkStatus();
  } catch (const std::exception& e) {
    return absl::InternalError(absl::StrCat("outlier variant: ", e.what()));
  }
}

}  // namespace quantd::quant
