// Helpers shared by the CUDA kernels (internal).
#ifndef QUANTD_KERNELS_CUDA_COMMON_CUH_
#define QUANTD_KERNELS_CUDA_COMMON_CUH_

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>

namespace quantd::kernels::cuda {

// The launch status after a kernel launch: "" or the error text.
inline const char* LaunchResult() {
  const cudaError_t error = cudaGetLastError();
  return error == cudaSuccess ? "" : cudaGetErrorString(error);
}

// Streaming multiprocessors of the current device (0 when the query fails).
inline int MultiProcessorCount() {
  int device = 0;
  int count = 0;
  if (cudaGetDevice(&device) != cudaSuccess ||
      cudaDeviceGetAttribute(&count, cudaDevAttrMultiProcessorCount, device) != cudaSuccess) {
    cudaGetLastError();
    return 0;
  }
  return count;
}

__device__ __forceinline__ float ToFloat(float v) { return v; }
__device__ __forceinline__ float ToFloat(__half v) { return __half2float(v); }
__device__ __forceinline__ float ToFloat(__nv_bfloat16 v) { return __bfloat162float(v); }

template <typename T>
__device__ __forceinline__ T FromFloat(float v);
template <>
__device__ __forceinline__ float FromFloat<float>(float v) {
  return v;
}
template <>
__device__ __forceinline__ __half FromFloat<__half>(float v) {
  return __float2half_rn(v);
}
template <>
__device__ __forceinline__ __nv_bfloat16 FromFloat<__nv_bfloat16>(float v) {
  return __float2bfloat16_rn(v);
}

// Elements of T in one 16-byte vector.
template <typename T>
__host__ __device__ constexpr int VectorWidth() {
  return static_cast<int>(16 / sizeof(T));
}

// True when p is a multiple of `bytes` (a power of two).
__host__ __device__ __forceinline__ bool IsAligned(const void* p, int bytes) {
  return (reinterpret_cast<uintptr_t>(p) & static_cast<uintptr_t>(bytes - 1)) == 0;
}

// N consecutive elements of T as one naturally aligned value (N·sizeof(T) a power of two
// ≤ 16 bytes): a copy through a Vec pointer is a single vector load or store.
template <typename T, int N>
struct alignas(N * sizeof(T)) Vec {
  T v[N];
};

// Loads p[0..N) as floats into dst: one vector load when `vector` (p aligned to N·sizeof(T)),
// else N scalar loads.
template <typename T, int N>
__device__ __forceinline__ void LoadFloats(const T* p, bool vector, float* dst) {
  if (vector) {
    const Vec<T, N> raw = *reinterpret_cast<const Vec<T, N>*>(p);
#pragma unroll
    for (int i = 0; i < N; ++i) dst[i] = ToFloat(raw.v[i]);
  } else {
#pragma unroll
    for (int i = 0; i < N; ++i) dst[i] = ToFloat(p[i]);
  }
}

// The bits of a value of T, zero-extended.
__device__ __forceinline__ unsigned BitsOf(float v) { return __float_as_uint(v); }
__device__ __forceinline__ unsigned BitsOf(__half v) { return __half_as_ushort(v); }
__device__ __forceinline__ unsigned BitsOf(__nv_bfloat16 v) { return __bfloat16_as_ushort(v); }

// src[0..N) rounded to T, packed into 32-bit words in memory order (N·sizeof(T) a multiple of 4).
template <typename T, int N>
__device__ __forceinline__ void PackWords(const float* src, unsigned* words) {
  constexpr int kPerWord = 4 / static_cast<int>(sizeof(T));
#pragma unroll
  for (int w = 0; w < N / kPerWord; ++w) {
    unsigned word = 0;
#pragma unroll
    for (int e = 0; e < kPerWord; ++e) {
      word |= BitsOf(FromFloat<T>(src[w * kPerWord + e])) << (32 / kPerWord * e);
    }
    words[w] = word;
  }
}

// Stores src[0..N) rounded to T at p; same alignment rule as LoadFloats. The vector store is one
// explicit st.global of packed 32-bit words (__stwb, the default write-back policy): written as
// a plain copy of a Vec, or even of a uint4, the compiler split it into one store per element or
// word in many instantiations (FWHT rows of 16–2048 elements, every Kronecker size, per PTX).
template <typename T, int N>
__device__ __forceinline__ void StoreFloats(const float* src, bool vector, T* p) {
  constexpr int kBytes = N * static_cast<int>(sizeof(T));
  static_assert(kBytes <= 16 && (kBytes & (kBytes - 1)) == 0, "a power of two ≤ 16 bytes");
  if constexpr (kBytes >= 4) {
    if (vector) {
      unsigned words[kBytes / 4];
      PackWords<T, N>(src, words);
      if constexpr (kBytes == 16) {
        __stwb(reinterpret_cast<uint4*>(p), make_uint4(words[0], words[1], words[2], words[3]));
      } else if constexpr (kBytes == 8) {
        __stwb(reinterpret_cast<uint2*>(p), make_uint2(words[0], words[1]));
      } else {
        __stwb(reinterpret_cast<unsigned*>(p), words[0]);
      }
      return;
    }
  }
#pragma unroll
  for (int i = 0; i < N; ++i) p[i] = FromFloat<T>(src[i]);
}

}  // namespace quantd::kernels::cuda

#endif  // QUANTD_KERNELS_CUDA_COMMON_CUH_
