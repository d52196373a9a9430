#include "kernels/cuda/common.cuh"
#include "kernels/int4_pack.h"

namespace quantd::kernels {
namespace {

__global__ void PackInt4Kernel(const int8_t* values, int64_t count, uint8_t* packed) {
  const int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  const int64_t bytes = (count + 1) / 2;
  if (i >= bytes) return;
  const uint8_t low = static_cast<uint8_t>(values[2 * i]) & 0x0f;
  const uint8_t high = (2 * i + 1 < count) ? (static_cast<uint8_t>(values[2 * i + 1]) & 0x0f) : 0;
  packed[i] = static_cast<uint8_t>(low | (high << 4));
}

__global__ void UnpackInt4Kernel(const uint8_t* packed, int64_t count, int8_t* values) {
  const int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= count) return;
  const uint8_t nibble = (i % 2 == 0) ? (packed[i / 2] & 0x0f) : (packed[i / 2] >> 4);
  values[i] = static_cast<int8_t>((nibble ^ 0x08) - 0x08);
}

constexpr int kThreads = 256;

using cuda::LaunchResult;

}  // namespace

const char* PackInt4Cuda(const int8_t* values, int64_t count, uint8_t* packed, void* stream) {
  if (count <= 0) return "";
  const int64_t bytes = (count + 1) / 2;
  const unsigned blocks = static_cast<unsigned>((bytes + kThreads - 1) / kThreads);
  PackInt4Kernel<<<blocks, kThreads, 0, static_cast<cudaStream_t>(stream)>>>(values, count, packed);
  return LaunchResult();
}

const char* UnpackInt4Cuda(const uint8_t* packed, int64_t count, int8_t* values, void* stream) {
  if (count <= 0) return "";
  const unsigned blocks = static_cast<unsigned>((count + kThreads - 1) / kThreads);
  UnpackInt4Kernel<<<blocks, kThreads, 0, static_cast<cudaStream_t>(stream)>>>(packed, count,
                                                                               values);
  return LaunchResult();
}

}  // namespace quantd::kernels
