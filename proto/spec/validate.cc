#include "proto/spec/validate.h"

#include <cctype>
#include <cmath>
#include <limits>

#include "absl/strings/str_cat.h"
#include "proto/spec/defaults.h"
#include "proto/spec/eval_tasks.h"

namespace quantd {
namespace {

absl::Status FieldError(const std::string& field, const std::string& problem) {
  return absl::InvalidArgumentError(absl::StrCat(field, ": ", problem));
}

absl::Status CheckBits(const std::string& field, int32_t bits) {
  if ((bits >= 2 && bits <= 8) || bits == 16) return absl::OkStatus();
  return FieldError(field, absl::StrCat("must be 2..8 or 16 (16 = not quantized), got ", bits));
}

absl::Status CheckPositive(const std::string& field, int64_t value) {
  if (value > 0) return absl::OkStatus();
  return FieldError(field, absl::StrCat("must be positive, got ", value));
}

absl::Status CheckNonNegative(const std::string& field, int64_t value) {
  if (value >= 0) return absl::OkStatus();
  return FieldError(field, absl::StrCat("must be >= 0, got ", value));
}

absl::Status CheckRate(const std::string& field, double value, bool allow_zero) {
  if (std::isfinite(value) && (value > 0 || (allow_zero && value == 0))) {
    return absl::OkStatus();
  }
  return FieldError(field, absl::StrCat("must be a finite number ", allow_zero ? ">= 0" : "> 0",
                                        ", got ", value));
}

absl::Status CheckGroupSize(const std::string& field, int32_t group) {
  if (group == -1 || group > 0) return absl::OkStatus();
  return FieldError(field, absl::StrCat("must be -1 (per channel) or positive, got ", group));
}

absl::Status CheckDivides(const std::string& field, int64_t group, const std::string& what,
                          int64_t size) {
  if (group <= 0 || size % group == 0) return absl::OkStatus();
  return FieldError(field, absl::StrCat("group size ", group, " does not divide ", what, " (",
                                        size, ")"));
}

}  // namespace

absl::Status ValidateSpec(const v1::JobSpec& original) {
  v1::JobSpec spec = original;
  ApplyDefaults(&spec);

  if (spec.model().path().empty()) return FieldError("model.path", "is required");
  const std::string& dtype = spec.model().dtype();
  if (!dtype.empty() && dtype != "float32" && dtype != "bfloat16" && dtype != "float16") {
    return FieldError("model.dtype",
                      "must be \"float32\", \"bfloat16\" or \"float16\", got \"" + dtype + "\"");
  }

  const v1::CalibrationSpec& calibration = spec.calibration();
  if (calibration.dataset_path().empty()) {
    return FieldError("calibration.dataset_path", "is required");
  }
  if (calibration.documents() != "whole" && calibration.documents() != "blank-line") {
    return FieldError("calibration.documents",
                      "must be \"whole\" or \"blank-line\", got \"" + calibration.documents() +
                          "\"");
  }
  if (auto s = CheckPositive("calibration.train_size", calibration.train_size()); !s.ok()) return s;
  if (auto s = CheckNonNegative("calibration.val_size", calibration.val_size()); !s.ok()) return s;
  if (calibration.training_seqlen() < 2) {
    return FieldError("calibration.training_seqlen",
                      absl::StrCat("must be at least 2, got ", calibration.training_seqlen()));
  }

  const v1::QuantSpec& quant = spec.quant();
  if (auto s = CheckBits("quant.wbits", quant.wbits()); !s.ok()) return s;
  if (auto s = CheckBits("quant.input_bits", quant.input_bits()); !s.ok()) return s;
  if (auto s = CheckBits("quant.k_bits", quant.k_bits()); !s.ok()) return s;
  if (auto s = CheckBits("quant.v_bits", quant.v_bits()); !s.ok()) return s;
  if (auto s = CheckGroupSize("quant.w_group_size", quant.w_group_size()); !s.ok()) return s;
  if (auto s = CheckPositive("quant.kv_group_size", quant.kv_group_size()); !s.ok()) return s;
  if (!v1::QuantMode_IsValid(quant.input_mode())) {
    return FieldError("quant.input_mode", absl::StrCat("unknown mode ", quant.input_mode()));
  }
  if (!v1::QuantMode_IsValid(quant.kv_mode())) {
    return FieldError("quant.kv_mode", absl::StrCat("unknown mode ", quant.kv_mode()));
  }

  const v1::RotationSpec& rotation = spec.rotation();
  if (rotation.rotate_mode() != "hadamard" && rotation.rotate_mode() != "random") {
    return FieldError("rotation.rotate_mode",
                      "must be \"hadamard\" or \"random\", got \"" + rotation.rotate_mode() + "\"");
  }
  if ((rotation.down_online_had() || rotation.qk_online_had()) && !rotation.pre_rotate()) {
    return FieldError(rotation.down_online_had() ? "rotation.down_online_had"
                                                 : "rotation.qk_online_had",
                      "online Hadamard needs rotation.pre_rotate");
  }

  const v1::PrefixSpec& prefix = spec.prefix();
  if (!(std::isfinite(prefix.outlier_threshold()) && prefix.outlier_threshold() > 1.0)) {
    return FieldError("prefix.outlier_threshold",
                      absl::StrCat("must be a finite ratio > 1, got ", prefix.outlier_threshold()));
  }
  if (prefix.len() < 0 || prefix.len() > 64) {
    return FieldError("prefix.len", absl::StrCat("must be 0..64 (0 = as detected), got ",
                                                 prefix.len()));
  }
  if (auto s = CheckRate("prefix.lr", prefix.lr(), false); !s.ok()) return s;
  if (auto s = CheckNonNegative("prefix.epochs", prefix.epochs()); !s.ok()) return s;
  if (!v1::PrefixMode_IsValid(prefix.mode())) {
    return FieldError("prefix.mode", absl::StrCat("unknown mode ", prefix.mode()));
  }
  if (prefix.loss_site() != "block_output" && prefix.loss_site() != "down_proj_input") {
    return FieldError("prefix.loss_site", "must be \"block_output\" or \"down_proj_input\", got \"" +
                                              prefix.loss_site() + "\"");
  }
  for (int i = 0; i < prefix.target_layers_size(); ++i) {
    if (prefix.target_layers(i) < 0) {
      return FieldError(absl::StrCat("prefix.target_layers[", i, "]"),
                        absl::StrCat("must be >= 0, got ", prefix.target_layers(i)));
    }
  }

  const v1::TrainingSpec& training = spec.training();
  if (auto s = CheckNonNegative("training.epochs", training.epochs()); !s.ok()) return s;
  if (auto s = CheckRate("training.quant_lr", training.quant_lr(), true); !s.ok()) return s;
  if (auto s = CheckRate("training.weight_lr", training.weight_lr(), true); !s.ok()) return s;
  if (auto s = CheckPositive("training.batch_size", training.batch_size()); !s.ok()) return s;
  if (auto s = CheckPositive("training.loss_every_steps", training.loss_every_steps()); !s.ok()) {
    return s;
  }

  const v1::EvalSpec& eval = spec.eval();
  if (eval.ppl_seqlen() < 2) {
    return FieldError("eval.ppl_seqlen", absl::StrCat("must be at least 2, got ", eval.ppl_seqlen()));
  }
  if (auto s = CheckNonNegative("eval.ppl_max_windows", eval.ppl_max_windows()); !s.ok()) return s;
  if (auto s = CheckPositive("eval.eval_batch_size", eval.eval_batch_size()); !s.ok()) return s;
  for (int i = 0; i < eval.ppl_datasets_size(); ++i) {
    if (eval.ppl_datasets(i).empty()) {
      return FieldError(absl::StrCat("eval.ppl_datasets[", i, "]"), "is empty");
    }
  }
  if (auto tasks = ParseEvalTasks(eval.eval_tasks()); !tasks.ok()) return tasks.status();
  if (auto s = CheckNonNegative("eval.eval_task_limit", eval.eval_task_limit()); !s.ok()) return s;
  for (int i = 0; i < eval.compare_size(); ++i) {
    const std::string& variant = eval.compare(i);
    if (variant != "rtn" && variant != "rotation" && variant != "prefixquant") {
      return FieldError(absl::StrCat("eval.compare[", i, "]"),
                        "must be \"rtn\", \"rotation\" or \"prefixquant\", got \"" + variant +
                            "\"");
    }
  }

  const v1::Resources& resources = spec.resources();
  if (auto s = CheckPositive("resources.device_count", resources.device_count()); !s.ok()) {
    return s;
  }
  if (auto s = CheckNonNegative("resources.min_device_memory_bytes",
                                resources.min_device_memory_bytes());
      !s.ok()) {
    return s;
  }
  if (auto parsed = ParseMemorySize(resources.max_memory()); !parsed.ok()) {
    return FieldError("resources.max_memory", std::string(parsed.status().message()));
  }
  return absl::OkStatus();
}

absl::Status ValidateSpecForModel(const v1::JobSpec& original, const ModelShape& shape) {
  v1::JobSpec spec = original;
  ApplyDefaults(&spec);
  const v1::QuantSpec& quant = spec.quant();
  if (quant.wbits() < 16) {
    if (auto s = CheckDivides("quant.w_group_size", quant.w_group_size(), "hidden_size",
                              shape.hidden_size);
        !s.ok()) {
      return s;
    }
    if (auto s = CheckDivides("quant.w_group_size", quant.w_group_size(), "intermediate_size",
                              shape.intermediate_size);
        !s.ok()) {
      return s;
    }
  }
  if ((quant.k_bits() < 16 || quant.v_bits() < 16) && quant.kv_group_size() < shape.head_dim) {
    if (auto s = CheckDivides("quant.kv_group_size", quant.kv_group_size(), "head_dim",
                              shape.head_dim);
        !s.ok()) {
      return s;
    }
  }
  for (int i = 0; i < spec.prefix().target_layers_size(); ++i) {
    if (spec.prefix().target_layers(i) >= shape.num_layers) {
      return FieldError(absl::StrCat("prefix.target_layers[", i, "]"),
                        absl::StrCat("layer ", spec.prefix().target_layers(i),
                                     " does not exist (the model has ", shape.num_layers, ")"));
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<int64_t> ParseMemorySize(const std::string& text) {
  size_t i = 0;
  while (i < text.size() && std::isdigit(static_cast<unsigned char>(text[i]))) ++i;
  if (i == 0 || i > 18) {
    return absl::InvalidArgumentError("must be a size such as \"65GiB\", got \"" + text + "\"");
  }
  const int64_t number = std::stoll(text.substr(0, i));
  const std::string unit = text.substr(i);
  int64_t multiplier = 0;
  if (unit.empty() || unit == "B") multiplier = 1;
  if (unit == "KiB") multiplier = int64_t{1} << 10;
  if (unit == "MiB") multiplier = int64_t{1} << 20;
  if (unit == "GiB") multiplier = int64_t{1} << 30;
  if (unit == "TiB") multiplier = int64_t{1} << 40;
  if (unit == "KB") multiplier = 1000;
  if (unit == "MB") multiplier = 1000 * 1000;
  if (unit == "GB") multiplier = 1000 * 1000 * 1000;
  if (unit == "TB") multiplier = int64_t{1000} * 1000 * 1000 * 1000;
  if (multiplier == 0) {
    return absl::InvalidArgumentError("unknown unit \"" + unit +
                                      "\" (use B, KiB, MiB, GiB, TiB, KB, MB, GB or TB)");
  }
  if (number > std::numeric_limits<int64_t>::max() / multiplier) {
    return absl::InvalidArgumentError("size \"" + text + "\" is too large");
  }
  return number * multiplier;
}

}  // namespace quantd
