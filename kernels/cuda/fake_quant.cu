#include <algorithm>
#include <cstdint>

#include "kernels/cuda/common.cuh"
#include "kernels/fake_quant.h"

namespace quantd::kernels {
namespace {

using cuda::IsAligned;
using cuda::Vec;

constexpr int kThreads = 256;
constexpr int kMaxTeam = 1024;
constexpr int kPerThread = 32;  // elements each thread of a segment team keeps in registers

// Max over the block; every thread gets the result. blockDim.x is a multiple of 32.
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

// The scale of a segment whose max|x| is m (the CPU's ScaleFor).
__device__ __forceinline__ float ScaleFromMax(float m, float ratio, float qmax) {
  float s = ratio * m / qmax;
  if (!(s > 0.0f)) s = 1.0f;
  return s;
}

__device__ __forceinline__ float Quantize(float x, float s, float qmin, float qmax) {
  const float v = fminf(fmaxf(x / s, qmin), qmax);
  return rintf(v) * s;
}

// Max over a team of `team` threads (a power of two; teams of ≤ 32 threads lie inside one warp,
// larger ones are whole warps); every thread of the team gets it. Every thread of the block
// calls it (the shuffles use the full mask; teams of more than a warp meet at a barrier).
__device__ __forceinline__ float TeamMax(float v, int team) {
  __shared__ float warp_max[32];
  for (int offset = min(team, 32) / 2; offset > 0; offset >>= 1) {
    v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, offset));
  }
  if (team <= 32) return v;
  const int warp = static_cast<int>(threadIdx.x) >> 5;
  if ((threadIdx.x & 31) == 0) warp_max[warp] = v;
  __syncthreads();
  const int first = warp & ~(team / 32 - 1);
  for (int w = first; w < first + team / 32; ++w) v = fmaxf(v, warp_max[w]);
  return v;
}

// Segments (scale groups: a row per token, a group per group) of `len` elements, one per team of
// `team` threads; team g of block b takes segment b·(blockDim.x / team) + g. Thread t of a team
// keeps kPerThread elements (as fp32) in registers: kPerThread / W chunks of W = 16/sizeof(T)
// elements, chunk c starting at element (c·team + t)·W of the segment; team·kPerThread ≥ len.
// Elements at or past `len` read as 0 (no effect on max|x|) and are not written. Vector accesses
// when len % W == 0 and both pointers are 16-byte aligned, else scalar ones. Dynamic: max|x| over
// the team, the scale (written to scales), then the values quantized from registers; static:
// scales[segment] is read instead. Every element is read before it is written by the same thread,
// so `out` may equal `x`.
template <typename T, bool kDynamic>
__global__ void __launch_bounds__(kMaxTeam)
    SegmentKernel(const T* x, T* out, int64_t segments, int64_t len, int team, float ratio,
                  float qmin, float qmax, float* scales) {
  constexpr int kW = cuda::VectorWidth<T>();
  constexpr int kChunks = kPerThread / kW;
  const int g = static_cast<int>(threadIdx.x) / team;
  const int t = static_cast<int>(threadIdx.x) % team;
  const int64_t segment = static_cast<int64_t>(blockIdx.x) * (blockDim.x / team) + g;
  const bool active = segment < segments;
  const bool vector = len % kW == 0 && IsAligned(x, 16) && IsAligned(out, 16);
  const T* src = x + (active ? segment * len : 0);
  float v[kPerThread];
#pragma unroll
  for (int c = 0; c < kChunks; ++c) {
    const int64_t e = (static_cast<int64_t>(c) * team + t) * kW;
    if (active && vector && e < len) {
      cuda::LoadFloats<T, kW>(src + e, true, v + c * kW);
    } else {
#pragma unroll
      for (int i = 0; i < kW; ++i) {
        v[c * kW + i] = active && e + i < len ? cuda::ToFloat(src[e + i]) : 0.0f;
      }
    }
  }
  float s;
  if constexpr (kDynamic) {
    float m = 0.0f;
#pragma unroll
    for (int i = 0; i < kPerThread; ++i) m = fmaxf(m, fabsf(v[i]));
    m = TeamMax(m, team);
    s = ScaleFromMax(m, ratio, qmax);
    if (active && t == 0) scales[segment] = s;
  } else {
    s = active ? scales[segment] : 1.0f;
  }
  if (!active) return;
  T* dst = out + segment * len;
#pragma unroll
  for (int c = 0; c < kChunks; ++c) {
    const int64_t e = (static_cast<int64_t>(c) * team + t) * kW;
    float q[kW];
#pragma unroll
    for (int i = 0; i < kW; ++i) q[i] = Quantize(v[c * kW + i], s, qmin, qmax);
    if (vector) {
      if (e < len) cuda::StoreFloats<T, kW>(q, true, dst + e);
    } else {
#pragma unroll
      for (int i = 0; i < kW; ++i) {
        if (e + i < len) dst[e + i] = cuda::FromFloat<T>(q[i]);
      }
    }
  }
}

// Segments too long for a team's registers: one block per segment reads it twice (max, then
// quantize), each thread striding over 16-byte vectors (or elements when not aligned).
template <typename T, bool kDynamic>
__global__ void LongSegmentKernel(const T* x, T* out, int64_t len, float ratio, float qmin,
                                  float qmax, float* scales) {
  constexpr int kW = cuda::VectorWidth<T>();
  const int64_t offset = static_cast<int64_t>(blockIdx.x) * len;
  const bool vector = len % kW == 0 && IsAligned(x, 16) && IsAligned(out, 16);
  const int64_t step = vector ? kW : 1;
  const int64_t stride = step * blockDim.x;
  float s;
  if constexpr (kDynamic) {
    float m = 0.0f;
    for (int64_t i = threadIdx.x * step; i < len; i += stride) {
      float v[kW];
      if (vector) {
        cuda::LoadFloats<T, kW>(x + offset + i, true, v);
#pragma unroll
        for (int j = 0; j < kW; ++j) m = fmaxf(m, fabsf(v[j]));
      } else {
        m = fmaxf(m, fabsf(cuda::ToFloat(x[offset + i])));
      }
    }
    m = BlockMax(m);
    s = ScaleFromMax(m, ratio, qmax);
    if (threadIdx.x == 0) scales[blockIdx.x] = s;
  } else {
    s = scales[blockIdx.x];
  }
  for (int64_t i = threadIdx.x * step; i < len; i += stride) {
    if (vector) {
      float v[kW];
      cuda::LoadFloats<T, kW>(x + offset + i, true, v);
#pragma unroll
      for (int j = 0; j < kW; ++j) v[j] = Quantize(v[j], s, qmin, qmax);
      cuda::StoreFloats<T, kW>(v, true, out + offset + i);
    } else {
      out[offset + i] = cuda::FromFloat<T>(Quantize(cuda::ToFloat(x[offset + i]), s, qmin, qmax));
    }
  }
}

// Grid-wide max|x| for a per-tensor scale: a grid-stride loop over 16-byte vectors (elements
// when x is not aligned, and for the tail past the last whole vector), block maxima meeting in
// *max_bits through atomicMax on the bit patterns (monotonic for non-negative floats).
template <typename T>
__global__ void AbsMaxKernel(const T* x, int64_t total, unsigned* max_bits) {
  constexpr int kW = cuda::VectorWidth<T>();
  const int64_t vectors = IsAligned(x, 16) ? total / kW : 0;
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  const int64_t first = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  float m = 0.0f;
  for (int64_t i = first; i < vectors; i += stride) {
    float v[kW];
    cuda::LoadFloats<T, kW>(x + i * kW, true, v);
#pragma unroll
    for (int j = 0; j < kW; ++j) m = fmaxf(m, fabsf(v[j]));
  }
  for (int64_t i = vectors * kW + first; i < total; i += stride) {
    m = fmaxf(m, fabsf(cuda::ToFloat(x[i])));
  }
  m = BlockMax(m);
  if (threadIdx.x == 0) atomicMax(max_bits, __float_as_uint(m));
}

// Turns the max stored in scales[0] (as bits) into the scale, in place.
__global__ void ScaleFromMaxKernel(float* scales, float ratio, float qmax) {
  scales[0] = ScaleFromMax(__uint_as_float(*reinterpret_cast<unsigned*>(scales)), ratio, qmax);
}

// Per tensor, static: every element with scales[0]; grid-stride over vectors as AbsMaxKernel.
template <typename T>
__global__ void TensorKernel(const T* x, T* out, int64_t total, const float* scales, float qmin,
                             float qmax) {
  constexpr int kW = cuda::VectorWidth<T>();
  const float s = scales[0];
  const int64_t vectors = IsAligned(x, 16) && IsAligned(out, 16) ? total / kW : 0;
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  const int64_t first = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  for (int64_t i = first; i < vectors; i += stride) {
    float v[kW];
    cuda::LoadFloats<T, kW>(x + i * kW, true, v);
#pragma unroll
    for (int j = 0; j < kW; ++j) v[j] = Quantize(v[j], s, qmin, qmax);
    cuda::StoreFloats<T, kW>(v, true, out + i * kW);
  }
  for (int64_t i = vectors * kW + first; i < total; i += stride) {
    out[i] = cuda::FromFloat<T>(Quantize(cuda::ToFloat(x[i]), s, qmin, qmax));
  }
}

int64_t SegmentLength(const FakeQuantConfig& config, int64_t rows, int64_t cols) {
  if (config.granularity == QuantGranularity::kPerTensor) return rows * cols;
  if (config.granularity == QuantGranularity::kPerGroup) return config.group_size;
  return cols;
}

// Blocks of kThreads for a grid-stride loop over `work` items: enough to fill the device.
int64_t GridStrideBlocks(int64_t work) {
  const int sms = cuda::MultiProcessorCount();
  const int64_t cap = sms > 0 ? int64_t{sms} * 8 : 65535;
  return std::max<int64_t>(1, std::min<int64_t>((work + kThreads - 1) / kThreads, cap));
}

template <typename T>
int64_t TensorWork(const void* x, const void* out, int64_t total) {
  constexpr int kW = cuda::VectorWidth<T>();
  return IsAligned(x, 16) && IsAligned(out, 16) ? total / kW + total % kW : total;
}

template <typename T>
const char* LaunchTensorStatic(const void* x, void* out, int64_t total, const float* scales,
                               const FakeQuantConfig& config, cudaStream_t stream) {
  const auto blocks = static_cast<unsigned>(GridStrideBlocks(TensorWork<T>(x, out, total)));
  TensorKernel<T><<<blocks, kThreads, 0, stream>>>(
      static_cast<const T*>(x), static_cast<T*>(out), total, scales,
      static_cast<float>(QuantMin(config.bits)), static_cast<float>(QuantMax(config.bits)));
  return cuda::LaunchResult();
}

template <typename T>
const char* LaunchTensorDynamic(const void* x, void* out, int64_t total,
                                const FakeQuantConfig& config, float ratio, float* scales,
                                cudaStream_t stream) {
  const cudaError_t error = cudaMemsetAsync(scales, 0, sizeof(float), stream);
  if (error != cudaSuccess) return cudaGetErrorString(error);
  const auto blocks = static_cast<unsigned>(GridStrideBlocks(TensorWork<T>(x, x, total)));
  AbsMaxKernel<T><<<blocks, kThreads, 0, stream>>>(static_cast<const T*>(x), total,
                                                   reinterpret_cast<unsigned*>(scales));
  if (const char* launch = cuda::LaunchResult(); launch[0] != '\0') return launch;
  ScaleFromMaxKernel<<<1, 1, 0, stream>>>(scales, ratio, static_cast<float>(QuantMax(config.bits)));
  if (const char* launch = cuda::LaunchResult(); launch[0] != '\0') return launch;
  return LaunchTensorStatic<T>(x, out, total, scales, config, stream);
}

// Per token or per group: a team per segment when the segment fits the team's registers, else
// a block per segment reading it twice.
template <typename T, bool kDynamic>
const char* LaunchSegments(const void* x, void* out, int64_t rows, int64_t cols,
                           const FakeQuantConfig& config, float ratio, float* scales,
                           cudaStream_t stream) {
  const int64_t len = SegmentLength(config, rows, cols);
  const int64_t segments = rows * cols / len;
  const auto qmin = static_cast<float>(QuantMin(config.bits));
  const auto qmax = static_cast<float>(QuantMax(config.bits));
  const int64_t needed = (len + kPerThread - 1) / kPerThread;  // threads for one segment
  if (needed > kMaxTeam) {
    if (segments > 0x7fffffff) return "too many scale segments for one launch";
    LongSegmentKernel<T, kDynamic><<<static_cast<unsigned>(segments), kMaxTeam, 0, stream>>>(
        static_cast<const T*>(x), static_cast<T*>(out), len, ratio, qmin, qmax, scales);
    return cuda::LaunchResult();
  }
  int team = 1;
  while (team < needed) team *= 2;
  const int block = std::max(team, kThreads);
  const int64_t per_block = block / team;
  const int64_t blocks = (segments + per_block - 1) / per_block;
  if (blocks > 0x7fffffff) return "too many scale segments for one launch";
  SegmentKernel<T, kDynamic><<<static_cast<unsigned>(blocks), block, 0, stream>>>(
      static_cast<const T*>(x), static_cast<T*>(out), segments, len, team, ratio, qmin, qmax,
      scales);
  return cuda::LaunchResult();
}

template <typename T>
const char* LaunchDynamic(const void* x, void* out, int64_t rows, int64_t cols,
                          const FakeQuantConfig& config, float ratio, float* scales,
                          cudaStream_t stream) {
  if (config.granularity == QuantGranularity::kPerTensor) {
    return LaunchTensorDynamic<T>(x, out, rows * cols, config, ratio, scales, stream);
  }
  return LaunchSegments<T, true>(x, out, rows, cols, config, ratio, scales, stream);
}

template <typename T>
const char* LaunchStatic(const void* x, void* out, int64_t rows, int64_t cols,
                         const FakeQuantConfig& config, const float* scales, cudaStream_t stream) {
  if (config.granularity == QuantGranularity::kPerTensor) {
    return LaunchTensorStatic<T>(x, out, rows * cols, scales, config, stream);
  }
  // The static kernels only read the scales.
  return LaunchSegments<T, false>(x, out, rows, cols, config, 1.0f, const_cast<float*>(scales),
                                  stream);
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
