// The PrefixQuant job spec the suites run on the shared data: stories260K (or a variant of it)
// calibrated and evaluated on the TinyStories subset, split at blank lines; static W/A/KV
// quantization (per-tensor activations, KV groups of 8, per-channel weights with mse_init);
// rotation with both online Hadamards; the detected prefix. Tests change what they vary.
#ifndef QUANTD_TESTS_COMMON_STORIES_JOB_H_
#define QUANTD_TESTS_COMMON_STORIES_JOB_H_

#include <string>

#include "quantd/v1/job.pb.h"

namespace quantd::test_data {

struct StoriesJobShape {
  int wbits = 8;
  int abits = 8;
  int kvbits = 8;
  int calibration_windows = 8;
  int validation_windows = 0;
  int training_seqlen = 256;
  int eval_windows = 16;  // of 256 tokens
};

inline std::string StoriesText() {
  return std::string(QUANTD_SHARED_DATA) + "/text/tinystories-valid-subset.txt";
}

inline v1::JobSpec StoriesQuantSpec(const std::string& model_dir,
                                    const StoriesJobShape& shape = {}) {
  v1::JobSpec spec;
  spec.mutable_model()->set_path(model_dir);
  auto* calibration = spec.mutable_calibration();
  calibration->set_dataset_path(StoriesText());
  calibration->set_documents("blank-line");
  calibration->set_train_size(shape.calibration_windows);
  calibration->set_val_size(shape.validation_windows);
  calibration->set_training_seqlen(shape.training_seqlen);
  calibration->set_seed(42);
  auto* quant = spec.mutable_quant();
  quant->set_wbits(shape.wbits);
  quant->set_input_bits(shape.abits);
  quant->set_input_mode(v1::QUANT_MODE_STATIC);
  quant->set_k_bits(shape.kvbits);
  quant->set_v_bits(shape.kvbits);
  quant->set_kv_group_size(8);
  quant->set_kv_mode(v1::QUANT_MODE_STATIC);
  quant->set_mse_init(true);
  spec.mutable_rotation()->set_pre_rotate(true);
  spec.mutable_rotation()->set_down_online_had(true);
  spec.mutable_rotation()->set_qk_online_had(true);
  spec.mutable_prefix()->set_enabled(true);
  auto* eval = spec.mutable_eval();
  eval->set_eval_ppl(true);
  eval->add_ppl_datasets(StoriesText());
  eval->set_ppl_seqlen(256);
  eval->set_ppl_max_windows(shape.eval_windows);
  return spec;
}

}  // namespace quantd::test_data

#endif  // QUANTD_TESTS_COMMON_STORIES_JOB_H_
