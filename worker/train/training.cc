#include "worker/train/training.h"

#include <cmath>

#include "absl/strings/cord.h"

namespace quantd::train {
namespace {
constexpr char kNumericalPayload[] = "quantd.train/numerical";
}  // namespace

double CosineLearningRate(double base, int64_t step, int64_t total) {
  if (total <= 0) return base;
  const double t = static_cast<double>(step) / static_cast<double>(total);
  return base * 0.5 * (1.0 + std::cos(M_PI * t));
}

absl::Status NumericalFailure(const std::string& message) {
  absl::Status status = absl::AbortedError("numerical: " + message);
  status.SetPayload(kNumericalPayload, absl::Cord("1"));
  return status;
}

bool IsNumericalFailure(const absl::Status& status) {
  return status.GetPayload(kNumericalPayload).has_value();
}

}  // namespace quantd::train
