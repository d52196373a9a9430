#include "worker/quant/quant_linear.h"

#include <stdexcept>

#include "kernels/hadamard_torch.h"

namespace quantd::quant {

torch::Tensor QuantLinear::Forward(const torch::Tensor& x) {
  torch::Tensor input = x;
  if (input_hadamard) {
    auto rotated = kernels::HadamardTransform(x, *input_hadamard, /*orthonormal=*/true);
    if (!rotated.ok()) throw std::runtime_error(std::string(rotated.status().message()));
    input = *rotated;
  }
  if (calibrating) {
    if (input_quantizer.is_static()) input_quantizer.Observe(input);
  } else {
    input = input_quantizer.Apply(input);
  }
  return torch::matmul(input, weight.t());
}

}  // namespace quantd::quant
