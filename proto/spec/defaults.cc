#include "proto/spec/defaults.h"

#include <string>

namespace quantd {
namespace {

std::string LastPathComponent(std::string path) {
  while (path.size() > 1 && path.back() == '/') path.pop_back();
  const auto slash = path.find_last_of('/');
  return slash == std::string::npos ? path : path.substr(slash + 1);
}

}  // namespace

void ApplyDefaults(v1::JobSpec* spec) {
  v1::ModelSpec& model = *spec->mutable_model();
  if (model.name().empty() && !model.path().empty()) {
    model.set_name(LastPathComponent(model.path()));
  }

  v1::CalibrationSpec& calibration = *spec->mutable_calibration();
  if (calibration.documents().empty()) calibration.set_documents("whole");
  if (!calibration.has_train_size()) calibration.set_train_size(512);
  if (!calibration.has_val_size()) calibration.set_val_size(64);
  if (!calibration.has_training_seqlen()) calibration.set_training_seqlen(1024);
  if (!calibration.has_seed()) calibration.set_seed(2);

  v1::QuantSpec& quant = *spec->mutable_quant();
  if (!quant.has_wbits()) quant.set_wbits(16);
  if (!quant.has_w_group_size()) quant.set_w_group_size(-1);
  if (!quant.has_input_bits()) quant.set_input_bits(16);
  if (quant.input_mode() == v1::QUANT_MODE_UNSPECIFIED) {
    quant.set_input_mode(v1::QUANT_MODE_DYNAMIC);
  }
  if (!quant.has_k_bits()) quant.set_k_bits(16);
  if (!quant.has_v_bits()) quant.set_v_bits(16);
  if (!quant.has_kv_group_size()) quant.set_kv_group_size(128);
  if (quant.kv_mode() == v1::QUANT_MODE_UNSPECIFIED) quant.set_kv_mode(v1::QUANT_MODE_DYNAMIC);

  v1::RotationSpec& rotation = *spec->mutable_rotation();
  if (rotation.rotate_mode().empty()) rotation.set_rotate_mode("hadamard");

  v1::PrefixSpec& prefix = *spec->mutable_prefix();
  if (!prefix.has_outlier_threshold()) prefix.set_outlier_threshold(64.0);
  if (!prefix.has_len()) prefix.set_len(0);
  if (!prefix.has_lr()) prefix.set_lr(1e-3);
  if (!prefix.has_epochs()) prefix.set_epochs(20);
  if (prefix.mode() == v1::PREFIX_MODE_UNSPECIFIED) prefix.set_mode(v1::PREFIX_MODE_DISCRETE);
  if (prefix.loss_site().empty()) prefix.set_loss_site("block_output");

  v1::TrainingSpec& training = *spec->mutable_training();
  if (!training.has_epochs()) training.set_epochs(0);
  if (!training.has_quant_lr()) training.set_quant_lr(5e-5);
  if (!training.has_weight_lr()) training.set_weight_lr(5e-6);
  if (!training.has_batch_size()) training.set_batch_size(4);
  if (!training.has_loss_every_steps()) training.set_loss_every_steps(1);

  v1::EvalSpec& eval = *spec->mutable_eval();
  if (!eval.has_ppl_seqlen()) eval.set_ppl_seqlen(2048);
  if (!eval.has_ppl_max_windows()) eval.set_ppl_max_windows(0);
  if (!eval.has_eval_task_limit()) eval.set_eval_task_limit(0);
  if (!eval.has_eval_batch_size()) eval.set_eval_batch_size(16);

  v1::Resources& resources = *spec->mutable_resources();
  if (!resources.has_device_count()) resources.set_device_count(1);
  if (resources.max_memory().empty()) resources.set_max_memory("65GiB");
}

}  // namespace quantd
