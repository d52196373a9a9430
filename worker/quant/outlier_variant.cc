#include "worker/quant/outlier_variant.h"

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

// Weights of the four RoPE pairs (frequencies 1, 0.1, 0.01, 0.001 for head_dim 8 and theta 1e4)
// in q·k = Σ w_i cos(Δ·θ_i): Σ w_i = -0.25 at Δ = 0, and ≥ 0.088 for every Δ in 1..520 (found by
// a grid search over weights, margin per unit of Σ|w_i|), times kScoreScale.
constexpr double kPairWeights[4] = {-0.75, -1.75, -1.75, 4.0};
constexpr double kScoreScale = 500;  // self ≈ -44, earlier markers ≥ 15 after 1/sqrt(8)
constexpr double kGate = 8;          // silu(8) ≈ 8; silu(-8) ≈ -0.003

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
    auto& slot = site == model::ActivationSite::kOProjInput    ? attn
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
  if (c.head_dim != 8 || c.rope_theta != 10000.0 || c.sliding_window > 0 ||
      c.rope_scaling.type != model::RopeScaling::Type::kNone) {
    return absl::InvalidArgumentError(
        "outlier variant: the construction needs head_dim 8, rope_theta 1e4, no RoPE scaling "
        "and no sliding window");
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

  const int64_t nm = static_cast<int64_t>(marker_ids.size());
  const int64_t d = c.hidden_size, ff = c.intermediate_size, hd = c.head_dim;
  const int64_t heads = c.num_attention_heads, kv = c.num_key_value_heads, rep = heads / kv;
  const int64_t heads2 = heads + rep * nm, kv2 = kv + nm;
  const int64_t d2 = RoundUp(d + 2 * nm, std::lcm<int64_t>(heads2, 4));
  const int64_t ff2 = RoundUp(ff + nm, 4);
  const int layers = static_cast<int>(c.num_hidden_layers);
  const double norm_fix = std::sqrt(static_cast<double>(d) / d2);

  try {
    torch::NoGradGuard no_grad;
    // ---- measure the original model: rms before each MLP at the markers, median max ----
    const int64_t window = 256, windows = std::min<int64_t>(8, stream.size() / window);
    if (windows < 1) return absl::InvalidArgumentError("outlier variant: calibration text too short");
    std::vector<std::vector<double>> rho(layers, std::vector<double>(nm, 0.0));
    std::vector<std::vector<int64_t>> rho_n(layers, std::vector<int64_t>(nm, 0));
    std::vector<double> median_max(layers, 0.0);
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
        for (int64_t k = 0; k < nm; ++k) {
          for (int64_t t = 0; t < window; ++t) {
            if (ids[t] == marker_ids[k]) {
              rho[l][k] += rms[t].item<double>();
              ++rho_n[l][k];
            }
          }
        }
        median_max[l] += rec.down[l].abs().amax(-1).median().item<double>() / windows;
        input = rec.out[l];
      }
    }
    for (int l = 0; l < layers; ++l) {
      for (int64_t k = 0; k < nm; ++k) {
        if (rho_n[l][k] == 0) {
          return absl::InvalidArgumentError("outlier variant: marker \"" + options.markers[k] +
                                            "\" does not occur in the calibration text");
        }
        rho[l][k] /= rho_n[l][k];
      }
    }

    // ---- build the variant ----
    auto flag = [&](int64_t k) { return d + 2 * k; };
    auto detector = [&](int64_t k) { return d + 2 * k + 1; };
    auto embed = Pad(model->embed_tokens, {c.vocab_size, d2});
    std::vector<double> kappa(nm), r0(nm);
    for (int64_t k = 0; k < nm; ++k) {
      const double e_rms = model->embed_tokens[marker_ids[k]].pow(2).mean().sqrt().item<double>();
      kappa[k] = 0.05 * e_rms;
      embed.index_put_({marker_ids[k], flag(k)}, kappa[k]);
      r0[k] = std::sqrt((e_rms * e_rms * d + kappa[k] * kappa[k]) / d2);
    }
    std::vector<std::pair<std::string, torch::Tensor>> tensors;
    tensors.push_back({"model.embed_tokens.weight", embed});
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
      for (int64_t k = 0; k < nm; ++k) {
        if (l == 0) {
          in_norm.index_put_({flag(k)}, r0[k] / kappa[k]);  // normed flag = 1 at the marker
          const int64_t qh = heads + rep * k, kh = kv + k;
          for (int i = 0; i < 4; ++i) {
            const double w = kPairWeights[i] * kScoreScale;
            q.index_put_({qh * hd + i, flag(k)}, std::sqrt(std::abs(w)));
            kk.index_put_({kh * hd + i, flag(k)}, (w < 0 ? -1 : 1) * std::sqrt(std::abs(w)));
          }
          v.index_put_({kh * hd, flag(k)}, 1.0);
          o.index_put_({detector(k), qh * hd}, kappa[k]);
        }
        const double norm_w = rho[l][k] / kappa[k];
        post_norm.index_put_({flag(k)}, norm_w);
        post_norm.index_put_({detector(k)}, norm_w);
        const double u = options.target_ratio * median_max[l] / (kGate / (1 + std::exp(-kGate)));
        gate.index_put_({ff + k, flag(k)}, kGate);
        gate.index_put_({ff + k, detector(k)}, -2 * kGate);
        up.index_put_({ff + k, flag(k)}, u);
      }
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
