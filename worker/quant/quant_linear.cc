#include "worker/quant/quant_linear.h"

#include <stdexcept>

#include "kernels/hadamard_torch.h"

namespace quantd::quant {

torch::Tensor QuantLinear::Forward(const torch::Tensor& x) {
  torch::Tensor input = x;
  if (input_hadamard) {
    auto rotated = kernels::OnlineHadamard(x, *input_hadamard, &hadamard_matrix_);
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

std::vector<torch::Tensor*> QuantLinear::StateTensors() {
  std::vector<torch::Tensor*> out = input_quantizer.StateTensors();
  for (torch::Tensor* t : {&weight, &weight_scales, &hadamard_matrix_}) out.push_back(t);
  return out;
}

}  // namespace quantd::quant
