#include "worker/quant/kv_transform.h"

#include <stdexcept>

#include "kernels/hadamard_torch.h"

namespace quantd::quant {
namespace {

torch::Tensor Rotate(const torch::Tensor& x, const kernels::HadamardFactors& factors) {
  auto rotated = kernels::HadamardTransform(x, factors, /*orthonormal=*/true);
  if (!rotated.ok()) throw std::runtime_error(std::string(rotated.status().message()));
  return *rotated;
}

}  // namespace

void KvTransform::Apply(int /*layer*/, torch::Tensor* q, torch::Tensor* k, torch::Tensor* v) {
  if (qk_hadamard) {
    *q = Rotate(*q, *qk_hadamard);
    *k = Rotate(*k, *qk_hadamard);
  }
  if (calibrating) {
    if (k_quantizer.is_static()) k_quantizer.Observe(*k);
    if (v_quantizer.is_static()) v_quantizer.Observe(*v);
    return;
  }
  if (!quantize) return;
  *k = k_quantizer.Apply(*k);
  *v = v_quantizer.Apply(*v);
}

std::vector<torch::Tensor*> KvTransform::StateTensors() {
  std::vector<torch::Tensor*> out = k_quantizer.StateTensors();
  for (torch::Tensor* t : v_quantizer.StateTensors()) out.push_back(t);
  return out;
}

}  // namespace quantd::quant
