#include "worker/model/modules.h"

namespace quantd::model {

torch::Tensor DenseLinear::Forward(const torch::Tensor& x) {
  return torch::nn::functional::linear(x, weight, bias);
}

}  // namespace quantd::model
