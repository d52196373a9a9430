#include "worker/quant/quant_linear.h"

#include <stdexcept>

#include "kernels/hadamard_torch.h"

namespace quantd::quant {

torch::Tensor QuantLinear::Forward(const torch::Tensor& x) {
  torch::Tensor input = x;
  if (input_hadamard && input_hadamard->base_order > 1 && input_hadamard->n <= 2048) {
    if (!dense_hadamard_.defined() || dense_hadamard_.device() != x.device()) {
      dense_hadamard_ = kernels::HadamardMatrix(*input_hadamard, /*orthonormal=*/true)
                            .to(x.device())
                            .t()
                            .contiguous();
    }
    input = torch::matmul(x, dense_hadamard_.to(x.scalar_type()));
  } else if (input_hadamard) {
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

std::vector<torch::Tensor*> QuantLinear::StateTensors() {
  std::vector<torch::Tensor*> out = input_quantizer.StateTensors();
  for (torch::Tensor* t : {&weight, &weight_scales, &dense_hadamard_}) out.push_back(t);
  return out;
}

}  // namespace quantd::quant
