#include "worker/pipeline/quantized_variant.h"

#include "absl/strings/str_cat.h"
#include "proto/common/status_macros.h"

namespace quantd::pipeline {

absl::StatusOr<VariantPlan> PlanVariant(const v1::JobSpec& spec, const std::string& name,
                                        const std::vector<int32_t>& detected_prefix) {
  VariantPlan plan;
  plan.name = name;
  const auto& r = spec.rotation();
  plan.rotation.mode = r.rotate_mode() == "random" ? quant::RotationOptions::Mode::kRandom
                                                   : quant::RotationOptions::Mode::kHadamard;
  plan.rotation.seed = static_cast<uint64_t>(spec.calibration().seed());
  plan.rotation.down_online_had = r.down_online_had();
  plan.rotation.qk_online_had = r.qk_online_had();
  if (name == "quantized") {
    plan.rotate = r.pre_rotate() || r.down_online_had() || r.qk_online_had();
    if (spec.prefix().enabled()) plan.prefix_ids = detected_prefix;
  } else if (name == "rtn") {
    plan.rotate = false;
  } else if (name == "rotation") {
    plan.rotate = true;
  } else if (name == "prefixquant") {
    plan.rotate = true;
    plan.prefix_ids = detected_prefix;
  } else {
    return absl::InvalidArgumentError("eval.compare: unknown variant \"" + name + "\"");
  }
  const auto& q = spec.quant();
  plan.quant.weight.bits = q.wbits();
  plan.quant.weight.group_size = q.w_group_size();
  plan.quant.weight.mse_init = q.mse_init();
  plan.quant.input_bits = q.input_bits();
  plan.quant.input_dynamic = q.input_mode() != v1::QUANT_MODE_STATIC;
  plan.quant.k_bits = q.k_bits();
  plan.quant.v_bits = q.v_bits();
  plan.quant.kv_group_size = q.kv_group_size();
  plan.quant.kv_dynamic = q.kv_mode() != v1::QUANT_MODE_STATIC;
  return plan;
}

std::string PlanKey(const VariantPlan& plan) {
  std::string key =
      plan.rotate
          ? absl::StrCat("rotate/", static_cast<int>(plan.rotation.mode), "/", plan.rotation.seed,
                         "/", plan.rotation.down_online_had, "/", plan.rotation.qk_online_had)
          : std::string("plain");
  key += "/prefix";
  for (int32_t id : plan.prefix_ids) absl::StrAppend(&key, ":", id);
  return key;  // the quantizer settings are the same for every variant of a job
}

absl::StatusOr<VariantModel> BuildVariant(const std::string& model_dir,
                                          const model::LoadOptions& load, const VariantPlan& plan,
                                          int32_t bos_id,
                                          const std::vector<std::vector<int32_t>>& calibration,
                                          int64_t batch_size, const VariantHooks& hooks) {
  VariantModel out;
  ASSIGN_OR_RETURN(out.model, model::LlamaModel::Load(model_dir, load));
  const std::string tag = "[" + plan.name + "] ";
  if (plan.rotate) {
    hooks.phase(v1::PHASE_ROTATE,
                tag + absl::StrCat("Hadamard rotation (R1, R2",
                                   plan.rotation.down_online_had ? ", online R4" : "",
                                   plan.rotation.qk_online_had ? ", online R3" : "", ")"));
    RETURN_IF_ERROR(quant::RotateModel(*out.model, plan.rotation));
  }
  if (!plan.prefix_ids.empty()) {
    hooks.phase(v1::PHASE_BUILD_PREFIX_CACHE,
                tag + absl::StrCat("prefix KV cache of ", plan.prefix_ids.size(), " tokens"));
    ASSIGN_OR_RETURN(out.prefix, quant::BuildPrefixCache(*out.model, plan.prefix_ids, bos_id));
  }
  RETURN_IF_ERROR(quant::QuantizeModel(*out.model, plan.quant));
  if (quant::NeedsCalibration(*out.model)) {
    hooks.phase(v1::PHASE_CALIBRATE,
                tag + absl::StrCat("static scales from ", calibration.size(), " windows"));
    RETURN_IF_ERROR(quant::CalibrateStatic(
        *out.model, calibration, out.prefix ? &out.prefix->kv : nullptr, batch_size,
        [&](int64_t done, int64_t total) {
          return hooks.progress(done, total, absl::StrCat(tag, "calibration ", done, "/", total));
        }));
  }
  return out;
}

}  // namespace quantd::pipeline
