#include "worker/quant/quantize_model.h"

#include <algorithm>
#include <memory>
#include <stdexcept>

#include "absl/strings/str_cat.h"
#include "worker/quant/kv_transform.h"
#include "worker/quant/quant_linear.h"

namespace quantd::quant {
namespace {

template <typename F>
void ForEachQuantizer(model::LlamaModel& model, F&& f) {
  for (auto& b : model.blocks) {
    for (auto* l :
         {&b.q_proj, &b.k_proj, &b.v_proj, &b.o_proj, &b.gate_proj, &b.up_proj, &b.down_proj}) {
      if (auto* q = dynamic_cast<QuantLinear*>(l->get())) f(q, nullptr);
    }
    if (auto* t = dynamic_cast<KvTransform*>(b.attention_transform.get())) f(nullptr, t);
  }
}

absl::StatusOr<std::shared_ptr<QuantLinear>> ToQuantLinear(
    const std::shared_ptr<model::LinearLayer>& layer, const QuantSettings& s,
    const std::string& name) {
  std::shared_ptr<QuantLinear> out;
  if (auto q = std::dynamic_pointer_cast<QuantLinear>(layer)) {
    out = q;
  } else if (auto d = std::dynamic_pointer_cast<model::DenseLinear>(layer)) {
    if (d->bias.defined()) return absl::FailedPreconditionError(name + " has a bias");
    out = std::make_shared<QuantLinear>(d->weight);
  } else {
    return absl::FailedPreconditionError(name + " is neither a DenseLinear nor a QuantLinear");
  }
  auto w = QuantizeWeightWithScales(out->weight, s.weight);
  if (!w.ok()) return absl::InvalidArgumentError(absl::StrCat(name, ": ", w.status().message()));
  out->weight = w->values;
  out->weight_quant = s.weight;
  out->weight_scales = w->scales;
  out->input_quantizer = ActQuantizer(s.input_bits, s.input_dynamic, 0, s.activation_clip);
  return out;
}

}  // namespace

absl::Status QuantizeModel(model::LlamaModel& model, const QuantSettings& settings) {
  try {
    torch::NoGradGuard no_grad;
    const int64_t head_dim = model.config().head_dim;
    const int64_t kv_group = std::min<int64_t>(settings.kv_group_size, head_dim);
    if (kv_group <= 0 || head_dim % kv_group != 0) {
      return absl::InvalidArgumentError(
          absl::StrCat("kv group size ", kv_group, " does not divide head_dim ", head_dim));
    }
    for (size_t i = 0; i < model.blocks.size(); ++i) {
      const model::BlockLease lease = model.LeaseBlock(static_cast<int>(i));
      auto& b = model.blocks[i];
      const std::string where = absl::StrCat("layer ", i, " ");
      const std::pair<std::shared_ptr<model::LinearLayer>*, const char*> layers[] = {
          {&b.q_proj, "q_proj"},      {&b.k_proj, "k_proj"},       {&b.v_proj, "v_proj"},
          {&b.o_proj, "o_proj"},      {&b.gate_proj, "gate_proj"}, {&b.up_proj, "up_proj"},
          {&b.down_proj, "down_proj"}};
      for (const auto& [layer, name] : layers) {
        auto q = ToQuantLinear(*layer, settings, where + name);
        if (!q.ok()) return q.status();
        *layer = *q;
      }
      auto transform = std::dynamic_pointer_cast<KvTransform>(b.attention_transform);
      if (!transform) {
        if (b.attention_transform) {
          return absl::FailedPreconditionError(where + "has a foreign attention transform");
        }
        transform = std::make_shared<KvTransform>();
        b.attention_transform = transform;
      }
      transform->k_quantizer = ActQuantizer(settings.k_bits, settings.kv_dynamic, kv_group);
      transform->v_quantizer = ActQuantizer(settings.v_bits, settings.kv_dynamic, kv_group);
    }
    return absl::OkStatus();
  } catch (const std::exception& e) {
    return absl::InternalError(absl::StrCat("quantizing the model failed: ", e.what()));
  }
}

bool NeedsCalibration(const model::LlamaModel& model) {
  bool needed = false;
  ForEachQuantizer(const_cast<model::LlamaModel&>(model), [&](QuantLinear* l, KvTransform* t) {
    if (l != nullptr && l->input_quantizer.is_static() && !l->input_quantizer.calibrated()) {
      needed = true;
    }
    if (t != nullptr) {
      for (const auto* q : {&t->k_quantizer, &t->v_quantizer}) {
        if (q->is_static() && !q->calibrated()) needed = true;
      }
    }
  });
  return needed;
}

absl::Status CalibrateStatic(model::LlamaModel& model,
                             const std::vector<std::vector<int32_t>>& windows,
                             const model::KvCache* prefix, int64_t batch_size,
                             const std::function<bool(int64_t, int64_t)>& progress) {
  if (windows.empty()) return absl::InvalidArgumentError("calibration: no windows");
  auto set_calibrating = [&](bool on) {
    ForEachQuantizer(model, [&](QuantLinear* l, KvTransform* t) {
      if (l != nullptr) l->calibrating = on;
      if (t != nullptr) t->calibrating = on;
    });
  };
  set_calibrating(true);
  absl::Status status = absl::OkStatus();
  try {
    torch::NoGradGuard no_grad;
    const int64_t n = static_cast<int64_t>(windows.size());
    const int64_t len = static_cast<int64_t>(windows[0].size());
    for (int64_t first = 0; first < n && status.ok(); first += batch_size) {
      const int64_t count = std::min(batch_size, n - first);
      std::vector<int64_t> flat;
      for (int64_t w = first; w < first + count; ++w) {
        if (static_cast<int64_t>(windows[w].size()) != len) {
          status = absl::InvalidArgumentError("calibration windows differ in length");
          break;
        }
        flat.insert(flat.end(), windows[w].begin(), windows[w].end());
      }
      if (!status.ok()) break;
      model::ForwardRequest request;
      request.input_ids = torch::tensor(flat, torch::kInt64).view({count, len});
      request.past = prefix;
      request.logits = model::LogitsMode::kNone;
      auto result = model.Forward(request);
      if (!result.ok()) status = result.status();
      if (status.ok() && progress && !progress(first + count, n)) {
        status = absl::CancelledError("calibration cancelled");
      }
    }
  } catch (const std::exception& e) {
    status = absl::InternalError(absl::StrCat("calibration failed: ", e.what()));
  }
  set_calibrating(false);
  if (!status.ok()) return status;
  ForEachQuantizer(model, [&](QuantLinear* l, KvTransform* t) {
    if (l != nullptr && l->input_quantizer.is_static() && status.ok()) {
      status = l->input_quantizer.Finalize();
    }
    if (t != nullptr) {
      for (auto* q : {&t->k_quantizer, &t->v_quantizer}) {
        if (q->is_static() && status.ok()) status = q->Finalize();
      }
    }
  });
  return status;
}

}  // namespace quantd::quant
