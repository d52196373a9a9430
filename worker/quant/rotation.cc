#include "worker/quant/rotation.h"

#include <cmath>
#include <memory>
#include <random>
#include <stdexcept>
#include <vector>

#include "absl/strings/str_cat.h"
#include "kernels/hadamard.h"
#include "kernels/hadamard_torch.h"
#include "worker/quant/kv_transform.h"
#include "worker/quant/quant_linear.h"

namespace quantd::quant {
namespace {

using model::DenseLinear;
using model::LinearLayer;

DenseLinear& Dense(const std::shared_ptr<LinearLayer>& layer, const char* name) {
  auto* dense = dynamic_cast<DenseLinear*>(layer.get());
  if (dense == nullptr) {
    throw std::logic_error(absl::StrCat(name, " is not a full-precision DenseLinear"));
  }
  if (dense->bias.defined()) throw std::domain_error(absl::StrCat(name, " has a bias"));
  return *dense;
}

torch::Tensor F64(const torch::Tensor& t) { return t.detach().to(torch::kFloat64); }

// (W · diag(norm)) · R: a linear reading the normed, rotated stream.
torch::Tensor FoldInput(const torch::Tensor& w, const torch::Tensor& norm, const torch::Tensor& r) {
  return torch::matmul(F64(w) * F64(norm).unsqueeze(0), r);
}

// The orthonormal Hadamard M/sqrt(n) in float64 (M's entries are exact in fp32).
torch::Tensor OrthonormalHadamard(int64_t n, uint64_t seed) {
  return kernels::HadamardMatrix(kernels::FactorHadamard(n, seed), /*orthonormal=*/false)
             .to(torch::kFloat64) /
         std::sqrt(static_cast<double>(n));
}

torch::Tensor Headwise(int64_t head_dim) { return OrthonormalHadamard(head_dim, 0); }

}  // namespace

torch::Tensor ResidualRotation(int64_t d, const RotationOptions& options) {
  std::mt19937_64 rng(options.seed);
  if (options.mode == RotationOptions::Mode::kRandom) {
    std::normal_distribution<double> normal;
    std::vector<double> values(d * d);
    for (auto& v : values) v = normal(rng);
    auto a = torch::tensor(values, torch::kFloat64).view({d, d});
    auto [q, r] = torch::linalg_qr(a);
    return q * torch::sign(torch::diagonal(r)).unsqueeze(0);
  }
  std::vector<double> signs(d);
  for (auto& s : signs) s = (rng() & 1) ? 1.0 : -1.0;
  auto h = OrthonormalHadamard(d, options.seed);
  return torch::tensor(signs, torch::kFloat64).unsqueeze(1) * h;
}

absl::Status RotateModel(model::LlamaModel& model, const RotationOptions& options) {
  try {
    torch::NoGradGuard no_grad;
    const auto& config = model.config();
    const auto dtype = model.dtype();
    const int64_t d = config.hidden_size;
    const int64_t hd = config.head_dim;
    auto cast = [&](const torch::Tensor& t) { return t.to(dtype).contiguous(); };
    // Check everything before changing anything.
    Dense(model.lm_head, "lm_head");
    for (auto& b : model.blocks) {
      for (auto* l :
           {&b.q_proj, &b.k_proj, &b.v_proj, &b.o_proj, &b.gate_proj, &b.up_proj, &b.down_proj}) {
        Dense(*l, "a block projection");
      }
      if (b.attention_transform) throw std::logic_error("an attention transform is installed");
    }

    const torch::Tensor r1 = ResidualRotation(d, options).to(model.device());
    const torch::Tensor r2 = Headwise(hd).to(model.device());
    std::optional<kernels::HadamardFactors> ff;
    if (options.down_online_had)
      ff = kernels::FactorHadamard(config.intermediate_size, options.seed);

    model.embed_tokens = cast(torch::matmul(F64(model.embed_tokens), r1));
    auto& head = Dense(model.lm_head, "lm_head");
    model.lm_head =
        std::make_shared<DenseLinear>(cast(FoldInput(head.weight, model.final_norm, r1)));
    model.final_norm = torch::ones_like(model.final_norm);

    for (size_t i = 0; i < model.blocks.size(); ++i) {
      const model::BlockLease lease = model.LeaseBlock(static_cast<int>(i));
      auto& b = model.blocks[i];
      auto& q = Dense(b.q_proj, "q_proj");
      auto& k = Dense(b.k_proj, "k_proj");
      auto& v = Dense(b.v_proj, "v_proj");
      auto& o = Dense(b.o_proj, "o_proj");
      auto& gate = Dense(b.gate_proj, "gate_proj");
      auto& up = Dense(b.up_proj, "up_proj");
      auto& down = Dense(b.down_proj, "down_proj");
      q.weight = cast(FoldInput(q.weight, b.input_norm, r1));
      k.weight = cast(FoldInput(k.weight, b.input_norm, r1));
      // R2 on v's output heads: rows of each head block multiplied by H.
      auto wv = FoldInput(v.weight, b.input_norm, r1);
      wv = torch::matmul(r2, wv.view({-1, hd, d})).reshape({-1, d});
      v.weight = cast(wv);
      // o_proj: input heads by Hᵀ, output by R1ᵀ.
      auto wo = F64(o.weight);
      wo = torch::matmul(wo.view({d, -1, hd}), r2.t()).reshape({d, -1});
      o.weight = cast(torch::matmul(r1.t(), wo));
      gate.weight = cast(FoldInput(gate.weight, b.post_attention_norm, r1));
      up.weight = cast(FoldInput(up.weight, b.post_attention_norm, r1));
      auto wd = torch::matmul(r1.t(), F64(down.weight));
      if (ff) {
        auto rotated = kernels::HadamardTransform(wd.to(torch::kFloat32), *ff, true);
        if (!rotated.ok()) return rotated.status();
        auto linear = std::make_shared<QuantLinear>(cast(*rotated));
        linear->input_hadamard = ff;
        b.down_proj = linear;
      } else {
        down.weight = cast(wd);
      }
      b.input_norm = torch::ones_like(b.input_norm);
      b.post_attention_norm = torch::ones_like(b.post_attention_norm);
      if (options.qk_online_had) {
        auto transform = std::make_shared<KvTransform>();
        transform->qk_hadamard = kernels::FactorHadamard(hd);
        b.attention_transform = transform;
      }
    }
    return absl::OkStatus();
  } catch (const std::logic_error& e) {
    return absl::FailedPreconditionError(absl::StrCat("rotation: ", e.what()));
  } catch (const std::exception& e) {
    return absl::InternalError(absl::StrCat("rotation failed: ", e.what()));
  }
}

}  // namespace quantd::quant
