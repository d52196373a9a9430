// When a CUDA tensor can go to the raw CUDA kernels (internal to quantd_kernels_torch).
//
// Uses only device-generic c10 APIs, so it compiles against a CPU-only LibTorch too (where no
// tensor is ever on CUDA). The raw kernels take a cudaStream_t; without CUDA headers from
// LibTorch the only stream we can name is the default one, so the kernels are used when the
// tensor's device has its default stream current (the usual case) and the torch-ops path is
// taken otherwise.
#ifndef QUANTD_KERNELS_TORCH_CUDA_SCOPE_H_
#define QUANTD_KERNELS_TORCH_CUDA_SCOPE_H_

#include <torch/torch.h>

#include "kernels/device.h"

namespace quantd::kernels {

class CudaKernelScope {
 public:
  // Makes x's device current for the scope when the kernels can run on it.
  explicit CudaKernelScope(const torch::Tensor& x);
  CudaKernelScope(const CudaKernelScope&) = delete;
  CudaKernelScope& operator=(const CudaKernelScope&) = delete;

  // True when x is a CUDA tensor, this build has the CUDA kernels, and the current stream of
  // x's device is its default stream.
  bool usable() const { return usable_; }
  // The stream to pass to the kernels (the default stream).
  void* stream() const { return nullptr; }

 private:
  c10::OptionalDeviceGuard guard_;
  bool usable_ = false;
};

// The kernels' element type for a tensor dtype (fp32, fp16 or bf16; callers check the dtype).
DeviceDType DeviceDTypeOf(const torch::Tensor& x);

}  // namespace quantd::kernels

#endif  // QUANTD_KERNELS_TORCH_CUDA_SCOPE_H_
