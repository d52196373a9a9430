// The CUDA entry points of a build without nvcc.
#include "kernels/fake_quant.h"
#include "kernels/fwht.h"
#include "kernels/int4_pack.h"

namespace quantd::kernels {
namespace {
constexpr const char* kNoCuda = "built without CUDA";
}  // namespace

bool CudaKernelsAvailable() { return false; }

bool CudaMemoryInfo(int, long long*, long long*) { return false; }  // NOLINT

const char* PackInt4Cuda(const int8_t*, int64_t, uint8_t*, void*) { return kNoCuda; }

const char* UnpackInt4Cuda(const uint8_t*, int64_t, int8_t*, void*) { return kNoCuda; }

const char* HadamardTransformCuda(const void*, void*, DeviceDType, int64_t, const HadamardFactors&,
                                  const float*, bool, bool, void*) {
  return kNoCuda;
}

const char* FwhtCuda(const void*, void*, DeviceDType, int64_t, int64_t, float, void*) {
  return kNoCuda;
}

const char* FakeQuantizeDynamicCuda(const void*, void*, DeviceDType, int64_t, int64_t,
                                    const FakeQuantConfig&, float, float*, void*) {
  return kNoCuda;
}

const char* FakeQuantizeCuda(const void*, void*, DeviceDType, int64_t, int64_t,
                             const FakeQuantConfig&, const float*, void*) {
  return kNoCuda;
}

}  // namespace quantd::kernels
