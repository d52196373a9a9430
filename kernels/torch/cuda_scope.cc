#include "kernels/torch/cuda_scope.h"

namespace quantd::kernels {

CudaKernelScope::CudaKernelScope(const torch::Tensor& x) {
  if (!x.is_cuda() || !CudaKernelsAvailable()) return;
  guard_.reset_device(x.device());
  const c10::impl::DeviceGuardImplInterface* impl =
      c10::impl::getDeviceGuardImpl(c10::DeviceType::CUDA);
  // Stream id 0 is the default stream of a device in every LibTorch release we build against.
  usable_ = impl->getStream(x.device()).id() == 0;
}

DeviceDType DeviceDTypeOf(const torch::Tensor& x) {
  if (x.scalar_type() == torch::kHalf) return DeviceDType::kFloat16;
  if (x.scalar_type() == torch::kBFloat16) return DeviceDType::kBFloat16;
  return DeviceDType::kFloat32;
}

}  // namespace quantd::kernels
