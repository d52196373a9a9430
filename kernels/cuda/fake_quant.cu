#include <algorithm>

#include "kernels/cuda/common.cuh"
#include "kernels/fake_quant.h"

namespace quantd::kernels {
namespace {

constexpr int kThreads = 256;

// Max over the block; every thread gets the result.
__device__ float BlockMax(float v) {
  __shared__ float warp_max[32];
  __shared__ float result;
  for (int offset = 16; offset > 0; offset >>= 1) {
    v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, offset));
  }
  const int lane = threadIdx.x & 31;
  const int warp = threadIdx.x >> 5;
  if (lane == 0) warp_max[warp] = v;
  __syncthreads();
  if (warp == 0) {
    const int warps = (blockDim.x + 31) / 32;
    v = lane < warps ? warp_max[lane] : 0.0f;
    for (int offset = 16; offset > 0; offset >>= 1) {
      v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, offset));
    }
    if (lane == 0) result = v;
  }
  __syncthreads();
  return result;
}

__device__ __forceinline__ float Quantize(float x, float s, float qmin, float qmax) {
  const float v = fminf(fmaxf(x / s, qmin), qmax);
  return rintf(v) * s;
}

// One block per segment (elements sharing a scale): max|x|, scale, quantize.
template <typename T>
__global__ void DynamicKernel(const T* x, T* out, int64_t seg_len, float ratio, float qmin,
                              float qmax, float* scales) {
  const int64_t offset = static_cast<int64_t>(blockIdx.x) * seg_len;
  float m = 0.0f;
  for (int64_t i = threadIdx.x; i < seg_len; i += blockDim.x) {
    m = fmaxf(m, fabsf(cuda::ToFloat(x[offset + i])));
  }
  m = BlockMax(m);
  float s = ratio * m / qmax;
  if (!(s > 0.0f)) s = 1.0f;
  if (threadIdx.x == 0) scales[blockIdx.x] = s;
  for (int64_t i = threadIdx.x; i < seg_len; i += blockDim.x) {
    out[offset + i] = cuda::FromFloat<T>(Quantize(cuda::ToFloat(x[offset + i]), s, qmin, qmax));
  }
}

// Grid-wide max|x| for a per-tensor scale: block maxima meet in *max_bits through atomicMax on
// the bit patterns (monotonic for non-negative floats).
template <typename T>
__global__ void AbsMaxKernel(const T* x, int64_t total, unsigned* max_bits) {
  float m = 0.0f;
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < total;
       i += stride) {
    m = fmaxf(m, fabsf(cuda::ToFloat(x[i])));
  }
  m = BlockMax(m);
  if (threadIdx.x == 0) atomicMax(max_bits, __float_as_uint(m));
}

// Turns the max stored in scales[0] (as bits) into the scale, in place.
__global__ void ScaleFromMaxKernel(float* scales, float ratio, float qmax) {
  const float m = __uint_as_float(*reinterpret_cast<unsigned*>(scales));
  float s = ratio * m / qmax;
  if (!(s > 0.0f)) s = 1.0f;
  scales[0] = s;
}

template <typename T>
__global__ void StaticKernel(const T* x, T* out, int64_t total, int64_t seg_len,
                             const float* scales, float qmin, float qmax) {
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < total;
       i += stride) {
    out[i] = cuda::FromFloat<T>(Quantize(cuda::ToFloat(x[i]), scales[i / seg_len], qmin, qmax));
  }
}

int64_t SegmentLength(const FakeQuantConfig& config, int64_t rows, int64_t cols) {
  if (config.granularity == QuantGranularity::kPerTensor) return rows * cols;
  if (config.granularity == QuantGranularity::kPerGroup) return config.group_size;
  return cols;
}

int64_t StaticBlocks(int64_t total) {
  return std::min<int64_t>((total + kThreads - 1) / kThreads, 65535 * 8);
}

template <typename T>
const char* LaunchPerTensorDynamic(const void* x, void* out, int64_t total,
                                   const FakeQuantConfig& config, float ratio, float* scales,
                                   cudaStream_t stream) {
  const cudaError_t error = cudaMemsetAsync(scales, 0, sizeof(float), stream);
  if (error != cudaSuccess) return cudaGetErrorString(error);
  const auto blocks = static_cast<unsigned>(StaticBlocks(total));
  AbsMaxKernel<T><<<blocks, kThreads, 0, stream>>>(static_cast<const T*>(x), total,
                                                   reinterpret_cast<unsigned*>(scales));
  if (const char* launch = cuda::LaunchResult(); launch[0] != '\0') return launch;
  const float qmax = static_cast<float>(QuantMax(config.bits));
  ScaleFromMaxKernel<<<1, 1, 0, stream>>>(scales, ratio, qmax);
  if (const char* launch = cuda::LaunchResult(); launch[0] != '\0') return launch;
  StaticKernel<T><<<blocks, kThreads, 0, stream>>>(static_cast<const T*>(x), static_cast<T*>(out),
                                                   total, total, scales,
                                                   static_cast<float>(QuantMin(config.bits)), qmax);
  return cuda::LaunchResult();
}

template <typename T>
const char* LaunchDynamic(const void* x, void* out, int64_t rows, int64_t cols,
                          const FakeQuantConfig& config, float ratio, float* scales,
                          cudaStream_t stream) {
  if (config.granularity == QuantGranularity::kPerTensor) {
    return LaunchPerTensorDynamic<T>(x, out, rows * cols, config, ratio, scales, stream);
  }
  const int64_t segments = NumScales(config, rows, cols);
  if (segments > 0x7fffffff) return "too many scale segments for one launch";
  const int64_t len = SegmentLength(config, rows, cols);
  const int threads = static_cast<int>(std::min<int64_t>(kThreads, (len + 31) / 32 * 32));
  DynamicKernel<T><<<static_cast<unsigned>(segments), threads, 0, stream>>>(
      static_cast<const T*>(x), static_cast<T*>(out), len, ratio,
      static_cast<float>(QuantMin(config.bits)), static_cast<float>(QuantMax(config.bits)), scales);
  return cuda::LaunchResult();
}

template <typename T>
const char* LaunchStatic(const void* x, void* out, int64_t rows, int64_t cols,
                         const FakeQuantConfig& config, const float* scales, cudaStream_t stream) {
  const int64_t total = rows * cols;
  const int64_t blocks = StaticBlocks(total);
  StaticKernel<T><<<static_cast<unsigned>(blocks), kThreads, 0, stream>>>(
      static_cast<const T*>(x), static_cast<T*>(out), total, SegmentLength(config, rows, cols),
      scales, static_cast<float>(QuantMin(config.bits)), static_cast<float>(QuantMax(config.bits)));
  return cuda::LaunchResult();
}

}  // namespace

const char* FakeQuantizeDynamicCuda(const void* x, void* out, DeviceDType dtype, int64_t rows,
                                    int64_t cols, const FakeQuantConfig& config, float clip_ratio,
                                    float* scales, void* stream) {
  if (const char* problem = CheckFakeQuant(config, rows, cols); problem[0] != '\0') return problem;
  if (rows * cols == 0) return "";
  auto* s = static_cast<cudaStream_t>(stream);
  switch (dtype) {
    case DeviceDType::kFloat32:
      return LaunchDynamic<float>(x, out, rows, cols, config, clip_ratio, scales, s);
    case DeviceDType::kFloat16:
      return LaunchDynamic<__half>(x, out, rows, cols, config, clip_ratio, scales, s);
    case DeviceDType::kBFloat16:
      return LaunchDynamic<__nv_bfloat16>(x, out, rows, cols, config, clip_ratio, scales, s);
  }
  return "unknown dtype";
}

const char* FakeQuantizeCuda(const void* x, void* out, DeviceDType dtype, int64_t rows,
                             int64_t cols, const FakeQuantConfig& config, const float* scales,
                             void* stream) {
  if (const char* problem = CheckFakeQuant(config, rows, cols); problem[0] != '\0') return problem;
  if (rows * cols == 0) return "";
  auto* s = static_cast<cudaStream_t>(stream);
  switch (dtype) {
    case DeviceDType::kFloat32:
      return LaunchStatic<float>(x, out, rows, cols, config, scales, s);
    case DeviceDType::kFloat16:
      return LaunchStatic<__half>(x, out, rows, cols, config, scales, s);
    case DeviceDType::kBFloat16:
      return LaunchStatic<__nv_bfloat16>(x, out, rows, cols, config, scales, s);
  }
  return "unknown dtype";
}

}  // namespace quantd::kernels
