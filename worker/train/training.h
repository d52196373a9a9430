// What both training phases share: loss points, the caller's callbacks, the learning-rate
// schedule and the status that marks a numerical failure.
//
// Loss points mirror proto LossPoint (quantd/v1/job.proto) without depending on it: the
// pipeline converts them (phase kPrefix -> PHASE_TRAIN_PREFIX, kFinetune -> PHASE_FINETUNE).
#ifndef QUANTD_WORKER_TRAIN_TRAINING_H_
#define QUANTD_WORKER_TRAIN_TRAINING_H_

#include <cstdint>
#include <functional>
#include <map>
#include <string>

#include "absl/status/status.h"

namespace quantd::train {

enum class TrainPhase { kPrefix, kFinetune };

struct LossPoint {
  TrainPhase phase = TrainPhase::kPrefix;
  int block = -1;     // fine-tuning: the block index; prefix: -1
  int epoch = 0;      // from 0
  int64_t step = 0;   // from 0 within the phase (fine-tuning: within the block)
  std::string split;  // "train" or "val"
  double loss = 0.0;
  std::map<std::string, double> components;  // named parts of `loss` (may be empty)
  double learning_rate = 0.0;  // the rate used at `step` (val: the rate of the epoch's last step)
};

// Callbacks of a training run, all optional, all called on the training thread in order.
struct TrainCallbacks {
  std::function<void(const LossPoint&)> on_loss;
  // Recoverable trouble (a NaN/Inf loss rolled back, a checkpoint ignored) and notable facts.
  std::function<void(const std::string&)> on_log;
  // Asked between steps; true stops the run with CANCELLED within one step.
  std::function<bool()> cancelled;
};

// Cosine decay from `base` at step 0 towards 0 at step `total`:
// base · (1 + cos(π · step / total)) / 2. total <= 0 gives base.
double CosineLearningRate(double base, int64_t step, int64_t total);

// ABORTED with a "numerical" payload: training diverged (NaN/Inf) beyond what rollback allows.
// The pipeline maps it to FailureReason NUMERICAL.
absl::Status NumericalFailure(const std::string& message);
bool IsNumericalFailure(const absl::Status& status);

}  // namespace quantd::train

#endif  // QUANTD_WORKER_TRAIN_TRAINING_H_
