#include <cuda_runtime.h>

#include "kernels/device.h"

namespace quantd::kernels {

bool CudaKernelsAvailable() {
  int devices = 0;
  if (cudaGetDeviceCount(&devices) != cudaSuccess) {
    cudaGetLastError();  // clear the sticky "no device" error
    return false;
  }
  return devices > 0;
}

}  // namespace quantd::kernels
