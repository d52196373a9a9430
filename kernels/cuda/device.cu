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

bool CudaMemoryInfo(int index, long long* free_bytes, long long* total_bytes) {  // NOLINT
  int current = 0;
  if (cudaGetDevice(&current) != cudaSuccess || cudaSetDevice(index) != cudaSuccess) {
    cudaGetLastError();
    return false;
  }
  size_t free_now = 0, total = 0;
  const bool ok = cudaMemGetInfo(&free_now, &total) == cudaSuccess;
  if (!ok) cudaGetLastError();
  cudaSetDevice(current);
  *free_bytes = static_cast<long long>(free_now);  // NOLINT
  *total_bytes = static_cast<long long>(total);    // NOLINT
  return ok;
}

}  // namespace quantd::kernels
