#include "worker/train/ste_block.h"

#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "kernels/fake_quant_torch.h"
#include "kernels/hadamard_torch.h"
#include "proto/common/status_macros.h"

namespace quantd::train {
namespace {

// Learned scales divide: AdamW must not push one to zero or below (a flipped grid, NaN). Below
// kMinScale the value is held there, while the gradient still passes (straight through), so a
// scale can climb back.
constexpr double kMinScale = 1e-8;
torch::Tensor PositiveScale(const torch::Tensor& scale) {
  return scale + (scale.clamp_min(kMinScale) - scale).detach();
}

template <typename T>
T OrThrow(absl::StatusOr<T> value) {
  if (!value.ok()) throw std::runtime_error(std::string(value.status().message()));
  return std::move(value).value();
}

class SteBlock : public TrainableBlock {
 public:
  std::vector<torch::Tensor> QuantParameters() override {
    std::vector<torch::Tensor> out;
    for (auto& [name, layer] : layers_) {
      out.push_back(layer->weight_scales);
      if (layer->quantize_input && (!layer->input_dynamic || layer->learn_input_clip)) {
        out.push_back(layer->input_scale);
      }
    }
    return out;
  }
  std::vector<torch::Tensor> WeightParameters() override {
    std::vector<torch::Tensor> out;
    for (auto& [name, layer] : layers_) out.push_back(layer->weight);
    return out;
  }
  std::vector<std::pair<std::string, torch::Tensor>> State() override {
    std::vector<std::pair<std::string, torch::Tensor>> out;
    for (auto& [name, layer] : layers_) {
      out.emplace_back(name + ".weight", layer->weight);
      out.emplace_back(name + ".weight_scales", layer->weight_scales);
      if (layer->quantize_input) out.emplace_back(name + ".input_scale", layer->input_scale);
    }
    return out;
  }
  void Finish() override {
    for (auto& [name, layer] : layers_) layer->Bake();
  }

  std::vector<std::pair<std::string, std::shared_ptr<SteLinear>>> layers_;
};

absl::StatusOr<std::shared_ptr<SteLinear>> MakeLayer(
    const std::shared_ptr<model::LinearLayer>& layer, const SteBlockOptions& options,
    const std::string& name) {
  auto out = std::make_shared<SteLinear>();
  std::optional<LinearSource> source;
  if (options.adapt) source = options.adapt(*layer);
  if (!source.has_value()) {
    auto dense = std::dynamic_pointer_cast<model::DenseLinear>(layer);
    if (dense == nullptr) return absl::InvalidArgumentError(name + " is of an unknown layer type");
    if (dense->bias.defined()) return absl::InvalidArgumentError(name + " has a bias");
    source = LinearSource{dense->weight, std::nullopt, torch::Tensor()};
  }
  out->weight = source->weight;
  out->input_hadamard = source->input_hadamard;
  torch::NoGradGuard no_grad;
  const int64_t in = out->weight.size(1);
  out->weight_dtype = out->weight.scalar_type();
  out->weight = out->weight.detach().to(torch::kFloat32).clone();
  out->weight_config.bits = options.wbits;
  if (options.w_group_size > 0) {
    if (in % options.w_group_size != 0) {
      return absl::InvalidArgumentError(
          absl::StrCat(name, ": group size ", options.w_group_size, " does not divide ", in));
    }
    out->weight_config.granularity = kernels::QuantGranularity::kPerGroup;
    out->weight_config.group_size = options.w_group_size;
  } else {
    out->weight_config.granularity = kernels::QuantGranularity::kPerToken;
  }
  const torch::Tensor w = out->weight.to(torch::kFloat32).contiguous();
  if (options.mse_init) {
    ASSIGN_OR_RETURN(out->weight_scales, kernels::MseSearchScales(w, out->weight_config));
  } else {
    ASSIGN_OR_RETURN(kernels::FakeQuantOutput q,
                     kernels::FakeQuantizeDynamic(w, out->weight_config));
    out->weight_scales = q.scales;
  }
  out->weight_scales = out->weight_scales.to(torch::kFloat32).clone();
  out->quantize_input = options.input_bits > 0 && options.input_bits < 16;
  out->input_dynamic = options.input_dynamic;
  out->learn_input_clip = options.learn_activation_clip;
  if (out->quantize_input) {
    out->input_config.bits = options.input_bits;
    if (options.input_dynamic) {
      out->input_config.granularity = kernels::QuantGranularity::kPerToken;
      out->input_scale = torch::full({}, options.activation_clip, torch::kFloat32);
    } else {
      if (!source->static_input_scale.defined() || source->static_input_scale.numel() != 1) {
        return absl::FailedPreconditionError(
            name + ": static input quantization needs a calibrated per-tensor scale");
      }
      out->input_config.granularity = kernels::QuantGranularity::kPerTensor;
      out->input_scale = source->static_input_scale.to(torch::kFloat32).reshape({}).clone();
    }
    out->input_scale = out->input_scale.to(out->weight.device());
  }
  out->weight_scales = out->weight_scales.to(out->weight.device());
  return out;
}

}  // namespace

torch::Tensor SteLinear::Forward(const torch::Tensor& x) {
  torch::Tensor input = x;
  if (input_hadamard) {
    input = OrThrow(kernels::OnlineHadamard(input, *input_hadamard, &hadamard_matrix_));
  }
  if (quantize_input) {
    const torch::Tensor scale = PositiveScale(input_scale);
    input = input_dynamic
                ? OrThrow(kernels::FakeQuantizeDynamicSte(input, input_config, scale)).values
                : OrThrow(kernels::FakeQuantizeSte(input, input_config, scale));
  }
  const torch::Tensor w =
      baked.defined()
          ? baked
          : OrThrow(kernels::FakeQuantizeSte(weight, weight_config, PositiveScale(weight_scales)));
  return torch::matmul(input, w.to(input.scalar_type()).t());
}

void SteLinear::Bake() {
  torch::NoGradGuard no_grad;
  weight_scales = weight_scales.detach().clamp_min(kMinScale);
  if (input_scale.defined()) input_scale = input_scale.detach().clamp_min(kMinScale);
  baked = OrThrow(kernels::FakeQuantizeSte(weight.detach(), weight_config, weight_scales))
              .to(weight_dtype);
  // The fp32 master is done with. The weight becomes the baked one (one tensor, in the model's
  // dtype), so a finished block holds no extra copy, and a checkpoint of it restores exactly:
  // baking a baked weight again gives the same grid points (its rounding is far below s / 2).
  weight = baked;
}

BlockInstaller MakeSteBlockInstaller(const SteBlockOptions& options) {
  return [options](model::LlamaModel& model,
                   int layer) -> absl::StatusOr<std::unique_ptr<TrainableBlock>> {
    if (layer < 0 || layer >= static_cast<int>(model.blocks.size())) {
      return absl::InvalidArgumentError(absl::StrCat("no block ", layer));
    }
    model::LlamaBlock& b = model.blocks[layer];
    auto block = std::make_unique<SteBlock>();
    const std::pair<std::shared_ptr<model::LinearLayer>*, const char*> slots[] = {
        {&b.q_proj, "q_proj"},      {&b.k_proj, "k_proj"},       {&b.v_proj, "v_proj"},
        {&b.o_proj, "o_proj"},      {&b.gate_proj, "gate_proj"}, {&b.up_proj, "up_proj"},
        {&b.down_proj, "down_proj"}};
    std::vector<std::shared_ptr<SteLinear>> made;
    try {
      for (const auto& [slot, name] : slots) {
        ASSIGN_OR_RETURN(auto ste,
                         MakeLayer(*slot, options, absl::StrCat("layer ", layer, " ", name)));
        block->layers_.emplace_back(name, ste);
      }
    } catch (const std::exception& e) {
      return absl::InternalError(absl::StrCat("installing STE block ", layer, ": ", e.what()));
    }
    for (size_t i = 0; i < block->layers_.size(); ++i) *slots[i].first = block->layers_[i].second;
    return std::unique_ptr<TrainableBlock>(std::move(block));
  };
}

}  // namespace quantd::train
