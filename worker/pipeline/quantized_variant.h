// Builds one quantized model of a job: a fresh copy of the checkpoint, optionally rotated
// (RotationSpec), optionally with the prefixed KV cache built from the full-precision rotated
// model, then fake-quantized (QuantSpec) and, for static scales, calibrated on the calibration
// windows after the prefix. The job runs this once for its own settings and once per
// `eval.compare` variant:
//   rtn          no rotation, no prefix
//   rotation     the spec's rotation (pre_rotate forced on), no prefix
//   prefixquant  the spec's rotation (pre_rotate forced on) and the detected prefix
#ifndef QUANTD_WORKER_PIPELINE_QUANTIZED_VARIANT_H_
#define QUANTD_WORKER_PIPELINE_QUANTIZED_VARIANT_H_

#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "quantd/v1/job.pb.h"
#include "worker/model/llama.h"
#include "worker/quant/prefix_cache.h"
#include "worker/quant/quantize_model.h"
#include "worker/quant/rotation.h"

namespace quantd::pipeline {

struct VariantPlan {
  std::string name;  // "quantized", "rtn", "rotation", "prefixquant"
  bool rotate = false;
  quant::RotationOptions rotation;
  std::vector<int32_t> prefix_ids;  // empty: no prefix
  quant::QuantSettings quant;
};

// The plan of `name` ("quantized" = the spec's own settings) for a spec with defaults applied.
// INVALID_ARGUMENT for an unknown variant name.
absl::StatusOr<VariantPlan> PlanVariant(const v1::JobSpec& spec, const std::string& name,
                                        const std::vector<int32_t>& detected_prefix);

// Equal for two plans that build the same model (the name aside).
std::string PlanKey(const VariantPlan& plan);

struct VariantModel {
  std::unique_ptr<model::LlamaModel> model;
  std::optional<quant::PrefixCache> prefix;
};

// Phase and progress callbacks; `progress` returns false to cancel (CANCELLED).
struct VariantHooks {
  std::function<void(v1::Phase, const std::string&)> phase;
  std::function<bool(int64_t, int64_t, const std::string&)> progress;
};

absl::StatusOr<VariantModel> BuildVariant(const std::string& model_dir,
                                          const model::LoadOptions& load, const VariantPlan& plan,
                                          int32_t bos_id,
                                          const std::vector<std::vector<int32_t>>& calibration,
                                          int64_t batch_size, const VariantHooks& hooks);

}  // namespace quantd::pipeline

#endif  // QUANTD_WORKER_PIPELINE_QUANTIZED_VARIANT_H_
