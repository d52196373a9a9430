#include "worker/pipeline/finetune_installer.h"

#include <map>
#include <memory>

#include "absl/strings/str_cat.h"
#include "worker/quant/quant_linear.h"

namespace quantd::pipeline {
namespace {

using Slot = std::shared_ptr<model::LinearLayer> model::LlamaBlock::*;
constexpr std::pair<Slot, const char*> kSlots[] = {
    {&model::LlamaBlock::q_proj, "q_proj"},       {&model::LlamaBlock::k_proj, "k_proj"},
    {&model::LlamaBlock::v_proj, "v_proj"},       {&model::LlamaBlock::o_proj, "o_proj"},
    {&model::LlamaBlock::gate_proj, "gate_proj"}, {&model::LlamaBlock::up_proj, "up_proj"},
    {&model::LlamaBlock::down_proj, "down_proj"}};

}  // namespace

std::optional<train::LinearSource> FromQuantLinear(const model::LinearLayer& layer) {
  const auto* q = dynamic_cast<const quant::QuantLinear*>(&layer);
  if (q == nullptr) return std::nullopt;
  train::LinearSource source{q->weight, q->input_hadamard, torch::Tensor()};
  if (q->input_quantizer.is_static() && q->input_quantizer.calibrated()) {
    source.static_input_scale = q->input_quantizer.scales();
  }
  return source;
}

train::BlockInstaller MakeCalibratedBlockInstaller(const model::LlamaModel& calibrated,
                                                   const train::SteBlockOptions& options) {
  return [&calibrated, options](
             model::LlamaModel& model,
             int layer) -> absl::StatusOr<std::unique_ptr<train::TrainableBlock>> {
    if (calibrated.blocks.size() != model.blocks.size() || layer < 0 ||
        layer >= static_cast<int>(model.blocks.size())) {
      return absl::FailedPreconditionError(
          absl::StrCat("fine-tuning block ", layer, ": the calibrated twin has ",
                       calibrated.blocks.size(), " blocks, the model ", model.blocks.size()));
    }
    const model::LlamaBlock& twin = calibrated.blocks[layer];
    model::LlamaBlock& block = model.blocks[layer];
    const bool needs_scale = options.input_bits < 16 && !options.input_dynamic;
    std::map<const model::LinearLayer*, torch::Tensor> scales;
    for (const auto& [slot, name] : kSlots) {
      const auto* q = dynamic_cast<const quant::QuantLinear*>((twin.*slot).get());
      if (needs_scale && (q == nullptr || !q->input_quantizer.calibrated())) {
        return absl::FailedPreconditionError(absl::StrCat(
            "fine-tuning block ", layer, ": ", name, " of the twin has no calibrated input scale"));
      }
      if (q != nullptr && q->input_quantizer.calibrated()) {
        scales[(block.*slot).get()] = q->input_quantizer.scales();
      }
    }
    train::SteBlockOptions ste = options;
    ste.adapt = [scales](const model::LinearLayer& layer) -> std::optional<train::LinearSource> {
      std::optional<train::LinearSource> source = FromQuantLinear(layer);
      if (!source.has_value()) {
        const auto* dense = dynamic_cast<const model::DenseLinear*>(&layer);
        if (dense == nullptr || dense->bias.defined()) return std::nullopt;
        source = train::LinearSource{dense->weight, std::nullopt, torch::Tensor()};
      }
      if (auto it = scales.find(&layer); it != scales.end())
        source->static_input_scale = it->second;
      return source;
    };
    auto installed = train::MakeSteBlockInstaller(ste)(model, layer);
    if (installed.ok()) block.attention_transform = twin.attention_transform;
    return installed;
  };
}

absl::Status ToQuantLinears(model::LlamaModel& model, const quant::QuantSettings& settings) {
  torch::NoGradGuard no_grad;
  for (size_t i = 0; i < model.blocks.size(); ++i) {
    const model::BlockLease lease = model.LeaseBlock(static_cast<int>(i));
    for (const auto& [slot, name] : kSlots) {
      std::shared_ptr<model::LinearLayer>& layer = model.blocks[i].*slot;
      auto ste = std::dynamic_pointer_cast<train::SteLinear>(layer);
      if (ste == nullptr) continue;
      if (!ste->baked.defined()) {
        return absl::FailedPreconditionError(
            absl::StrCat("layer ", i, " ", name, ": fine-tuned layer not baked"));
      }
      auto q = std::make_shared<quant::QuantLinear>(ste->baked);
      q->weight_quant = settings.weight;
      q->weight_scales = ste->weight_scales.to(torch::kFloat32);
      q->input_hadamard = ste->input_hadamard;
      if (ste->quantize_input) {
        const float clip =
            ste->input_dynamic ? ste->input_scale.item<float>() : settings.activation_clip;
        q->input_quantizer =
            quant::ActQuantizer(ste->input_config.bits, ste->input_dynamic, 0, clip);
        if (!ste->input_dynamic) {
          q->input_quantizer.set_scales(ste->input_scale.to(torch::kFloat32).reshape({}));
        }
      }
      layer = q;
    }
  }
  return absl::OkStatus();
}

}  // namespace quantd::pipeline
