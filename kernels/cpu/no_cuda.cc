// The CUDA entry points of a build without nvcc.
#include "kernels/int4_pack.h"

namespace quantd::kernels {

bool CudaKernelsAvailable() { return false; }

const char* PackInt4Cuda(const int8_t*, int64_t, uint8_t*, void*) { return "built without CUDA"; }

const char* UnpackInt4Cuda(const uint8_t*, int64_t, int8_t*, void*) {
  return "built without CUDA";
}

}  // namespace quantd::kernels
