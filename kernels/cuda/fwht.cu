#include <algorithm>
#include <cstdint>

#include "kernels/cuda/common.cuh"
#include "kernels/fwht.h"

namespace quantd::kernels {
namespace {

using cuda::IsAligned;

constexpr int64_t kMaxRow = 32768;
constexpr int kMaxLogP = 14;  // k ≥ 2 for a base, so p ≤ 32768 / 2
constexpr int kDefaultSharedBytes = 48 * 1024;
constexpr int kMinBlock = 256;

__host__ __device__ constexpr int Min(int a, int b) { return a < b ? a : b; }
__host__ __device__ constexpr int Max(int a, int b) { return a > b ? a : b; }
__host__ __device__ constexpr int Log2(int v) { return v <= 1 ? 0 : 1 + Log2(v / 2); }
__host__ __device__ constexpr int CeilPow2(int v) { return v <= 1 ? 1 : 2 * CeilPow2((v + 1) / 2); }

// Smallest power of two r with r² · 32 ≥ n: the registers per thread for which a team of
// n / r threads has at most r warps, so one exchange through shared memory covers the warp bits.
__host__ __device__ constexpr int MinRegisters(int n) {
  int r = 1;
  while (r * r * 32 < n) r *= 2;
  return r;
}

// ---------------------------------------------------------------------------------------------
// Team FWHT. A team of kTeam threads (a power of two; teams of ≤ 32 threads lie inside one warp,
// larger teams are whole warps) transforms p = kTeam · kR elements. Thread t of the team holds
// kR / kVc chunks of kVc consecutive elements: register x[c·kVc + v] is element
// (c·kTeam + t)·kVc + v. In binary the element index is [c | t | v] (high to low), so the FWHT,
// one butterfly stage per index bit (the stages commute), splits into stages on the register
// index (bits of c and v), stages on the lane bits of t (shuffles), and stages on the warp bits
// of t (an exchange through shared memory).
// ---------------------------------------------------------------------------------------------

// out[0..3] = the four floats at p (16-byte aligned), in one access.
__device__ __forceinline__ void LoadFloat4(const float* p, float* out) {
  const float4 v = *reinterpret_cast<const float4*>(p);
  out[0] = v.x;
  out[1] = v.y;
  out[2] = v.z;
  out[3] = v.w;
}

// Butterflies along every bit of the register index: x ← H_N·x.
template <int N>
__device__ __forceinline__ void RegisterFwht(float* x) {
#pragma unroll
  for (int h = 1; h < N; h <<= 1) {
#pragma unroll
    for (int i = 0; i < N; ++i) {
      if ((i & h) == 0) {
        const float a = x[i];
        const float b = x[i + h];
        x[i] = a + b;
        x[i + h] = a - b;
      }
    }
  }
}

// Butterflies along the low log2(kLanes) lane bits: the lane with the bit clear holds the low
// element of each pair (a → a + b), its partner the high one (b → a - b). Every lane of the warp
// must call it.
template <int kLanes, int N>
__device__ __forceinline__ void ShuffleFwht(float* x) {
  const int lane = static_cast<int>(threadIdx.x & 31);
#pragma unroll
  for (int m = 1; m < kLanes; m <<= 1) {
    const bool high = (lane & m) != 0;
#pragma unroll
    for (int i = 0; i < N; ++i) {
      const float other = __shfl_xor_sync(0xffffffffu, x[i], m);
      x[i] = high ? other - x[i] : x[i] + other;
    }
  }
}

// The team's registers to shared memory s (p floats, 16-byte aligned) in element order.
template <int kR, int kVc, int kTeam>
__device__ __forceinline__ void StoreTeam(const float* x, float* s, int t) {
#pragma unroll
  for (int c = 0; c < kR / kVc; ++c) {
    float* dst = s + (c * kTeam + t) * kVc;
    if constexpr (kVc % 4 == 0) {
#pragma unroll
      for (int q = 0; q < kVc; q += 4) {
        reinterpret_cast<float4*>(dst)[q / 4] =
            make_float4(x[c * kVc + q], x[c * kVc + q + 1], x[c * kVc + q + 2], x[c * kVc + q + 3]);
      }
    } else {
#pragma unroll
      for (int v = 0; v < kVc; ++v) dst[v] = x[c * kVc + v];
    }
  }
}

// Inverse of StoreTeam (kVc a multiple of 4: only teams of more than one warp use it).
template <int kR, int kVc, int kTeam>
__device__ __forceinline__ void LoadTeam(float* x, const float* s, int t) {
  static_assert(kVc % 4 == 0, "float4 access");
#pragma unroll
  for (int c = 0; c < kR / kVc; ++c) {
    const float* src = s + (c * kTeam + t) * kVc;
#pragma unroll
    for (int q = 0; q < kVc; q += 4) {
      LoadFloat4(src + q, x + c * kVc + q);
    }
  }
}

// Stages along the warp bits of t, on the team's elements in shared memory s (element order),
// with x (kR registers) as scratch. Thread t takes, for each a < kR / kWarps, the kWarps
// elements whose index has the warp bits w and the other bits o = a·kTeam + t (o's low
// log2(kVc) + 5 bits are the v and lane bits, its high bits the chunk bits), transforms them in
// registers and writes them back. Within a warp o takes 32 consecutive values, so the scalar
// accesses are conflict free. The caller synchronises before (s complete) and after.
template <int kR, int kVc, int kTeam>
__device__ __forceinline__ void CrossWarpFwht(float* x, float* s, int t) {
  constexpr int kWarps = kTeam / 32;
  static_assert(kWarps >= 2 && kR % kWarps == 0, "one exchange covers the warp bits");
  constexpr int kLowBits = Log2(kVc) + 5;
  constexpr int kLowMask = (1 << kLowBits) - 1;
  constexpr int kWarpBits = Log2(kWarps);
  constexpr int kGroups = kR / kWarps;
#pragma unroll
  for (int a = 0; a < kGroups; ++a) {
    const int o = a * kTeam + t;
    const int rest = (o & kLowMask) | ((o >> kLowBits) << (kLowBits + kWarpBits));
#pragma unroll
    for (int w = 0; w < kWarps; ++w) x[a * kWarps + w] = s[rest | (w << kLowBits)];
  }
#pragma unroll
  for (int a = 0; a < kGroups; ++a) RegisterFwht<kWarps>(x + a * kWarps);
#pragma unroll
  for (int a = 0; a < kGroups; ++a) {
    const int o = a * kTeam + t;
    const int rest = (o & kLowMask) | ((o >> kLowBits) << (kLowBits + kWarpBits));
#pragma unroll
    for (int w = 0; w < kWarps; ++w) s[rest | (w << kLowBits)] = x[a * kWarps + w];
  }
}

// ---------------------------------------------------------------------------------------------
// Power-of-two rows (k = 1).
// ---------------------------------------------------------------------------------------------

// Launch shape for rows of 2^kLogN elements of T: kR registers per thread (at least two 16-byte
// vectors, and enough that a team has at most kR warps), teams of kTeam threads, kRowsPerBlock
// rows per block of kBlock threads; shared memory only when a team spans warps.
template <typename T, int kLogN>
struct FwhtShape {
  static constexpr int kN = 1 << kLogN;
  static constexpr int kR = Min(kN, Max(2 * cuda::VectorWidth<T>(), MinRegisters(kN)));
  static constexpr int kVc = Min(cuda::VectorWidth<T>(), kR);
  static constexpr int kTeam = kN / kR;
  static constexpr int kBlock = Max(kTeam, kMinBlock);
  static constexpr int kRowsPerBlock = kBlock / kTeam;
  static constexpr int kSharedBytes = kTeam <= 32 ? 0 : kN * kRowsPerBlock * 4;
  static_assert(kTeam <= 1024 && kR <= 32, "n ≤ 32768");
};

// Team `threadIdx.x / kTeam` of block b transforms row b·kRowsPerBlock + team (rows past the end
// compute zeros and store nothing, but take part in the shuffles and barriers). Every read of
// `in` precedes every write of the same row by the same team, so `in` may equal `out`.
template <typename T, int kLogN>
__global__ void __launch_bounds__(FwhtShape<T, kLogN>::kBlock)
    FwhtKernel(const T* in, T* out, int64_t rows, float scale) {
  using S = FwhtShape<T, kLogN>;
  extern __shared__ float4 fwht_shared[];
  const int team = static_cast<int>(threadIdx.x) / S::kTeam;
  const int t = static_cast<int>(threadIdx.x) % S::kTeam;
  const int64_t row = static_cast<int64_t>(blockIdx.x) * S::kRowsPerBlock + team;
  const bool active = row < rows;
  constexpr int kVecBytes = S::kVc * static_cast<int>(sizeof(T));
  float x[S::kR];
  if (active) {
    const T* src = in + row * S::kN;
    const bool vector = IsAligned(in, kVecBytes);
#pragma unroll
    for (int c = 0; c < S::kR / S::kVc; ++c) {
      cuda::LoadFloats<T, S::kVc>(src + (c * S::kTeam + t) * S::kVc, vector, x + c * S::kVc);
    }
  } else {
#pragma unroll
    for (int i = 0; i < S::kR; ++i) x[i] = 0.0f;
  }
  RegisterFwht<S::kR>(x);
  ShuffleFwht<Min(S::kTeam, 32), S::kR>(x);
  if constexpr (S::kTeam > 32) {
    float* s = reinterpret_cast<float*>(fwht_shared) + team * S::kN;
    StoreTeam<S::kR, S::kVc, S::kTeam>(x, s, t);
    __syncthreads();
    CrossWarpFwht<S::kR, S::kVc, S::kTeam>(x, s, t);
    __syncthreads();
    LoadTeam<S::kR, S::kVc, S::kTeam>(x, s, t);
  }
  if (active) {
#pragma unroll
    for (int i = 0; i < S::kR; ++i) x[i] *= scale;
    T* dst = out + row * S::kN;
    const bool vector = IsAligned(out, kVecBytes);
#pragma unroll
    for (int c = 0; c < S::kR / S::kVc; ++c) {
      cuda::StoreFloats<T, S::kVc>(x + c * S::kVc, vector, dst + (c * S::kTeam + t) * S::kVc);
    }
  }
}

template <typename T, int kLogN>
const char* LaunchFwht(const void* in, void* out, int64_t rows, float scale, cudaStream_t stream) {
  using S = FwhtShape<T, kLogN>;
  const int64_t blocks = (rows + S::kRowsPerBlock - 1) / S::kRowsPerBlock;
  if (blocks > 0x7fffffff) return "too many rows for one launch";
  if (S::kSharedBytes > kDefaultSharedBytes) {
    const cudaError_t error = cudaFuncSetAttribute(
        FwhtKernel<T, kLogN>, cudaFuncAttributeMaxDynamicSharedMemorySize, S::kSharedBytes);
    if (error != cudaSuccess) return cudaGetErrorString(error);
  }
  FwhtKernel<T, kLogN><<<static_cast<unsigned>(blocks), S::kBlock, S::kSharedBytes, stream>>>(
      static_cast<const T*>(in), static_cast<T*>(out), rows, scale);
  return cuda::LaunchResult();
}

template <typename T, int kLogN = 0>
const char* DispatchFwht(int log_n, const void* in, void* out, int64_t rows, float scale,
                         cudaStream_t stream) {
  if constexpr (kLogN > 15) {
    return "Hadamard transform on CUDA supports rows of at most 32768 elements";
  } else {
    if (log_n == kLogN) return LaunchFwht<T, kLogN>(in, out, rows, scale, stream);
    return DispatchFwht<T, kLogN + 1>(log_n, in, out, rows, scale, stream);
  }
}

// ---------------------------------------------------------------------------------------------
// M = B ⊗ H_p with k = base order > 1: the row is k chunks of p. Each chunk is transformed by a
// team as above into shared memory (y, k × p fp32), then output chunk i is
// Σ_j B'(i, j) · y_j with B'(i, j) = base[i·k + j] (base[j·k + i] with `transpose`).
// ---------------------------------------------------------------------------------------------

constexpr int kTileI = 4;  // output chunks per thread in the mixing

template <typename T, int kLogP>
struct KroneckerShape {
  static constexpr int kP = 1 << kLogP;
  static constexpr int kR = Min(kP, 32);
  static constexpr int kVc = Min(cuda::VectorWidth<T>(), kR);
  static constexpr int kTeam = kP / kR;
  static constexpr int kTileC = Min(4, kP);  // output columns per thread in the mixing
};

// The base B' as the mixing reads it: from shared memory (sb[j·kpad + i], zero for i ≥ k) or
// straight from the global k×k base.
struct Coefficients {
  const float* data;
  int k;
  int kpad;
  bool transpose;
};

// acc[a][c] = Σ_j B'(i0 + a, j) · y[j·p + c0 + c], then the scaled tile to dst_row (the row's
// output) for the rows i0 + a < k.
template <typename T, int kTC, bool kShared>
__device__ __forceinline__ void MixTile(const float* y, int p, const Coefficients& b, int i0,
                                        int c0, float scale, bool vector, T* dst_row) {
  float acc[kTileI][kTC];
#pragma unroll
  for (int a = 0; a < kTileI; ++a) {
#pragma unroll
    for (int c = 0; c < kTC; ++c) acc[a][c] = 0.0f;
  }
#pragma unroll 2
  for (int j = 0; j < b.k; ++j) {
    float yv[kTC];
    const float* ys = y + j * p + c0;
    if constexpr (kTC == 4) {
      LoadFloat4(ys, yv);
    } else {
#pragma unroll
      for (int c = 0; c < kTC; ++c) yv[c] = ys[c];
    }
    float bv[kTileI];
    if constexpr (kShared) {
      static_assert(kTileI == 4, "one float4 of coefficients");
      LoadFloat4(b.data + j * b.kpad + i0, bv);
    } else {
#pragma unroll
      for (int a = 0; a < kTileI; ++a) {
        const int i = i0 + a;
        bv[a] = i < b.k ? __ldg(b.data + (b.transpose ? j * b.k + i : i * b.k + j)) : 0.0f;
      }
    }
#pragma unroll
    for (int a = 0; a < kTileI; ++a) {
#pragma unroll
      for (int c = 0; c < kTC; ++c) acc[a][c] += bv[a] * yv[c];
    }
  }
#pragma unroll
  for (int a = 0; a < kTileI; ++a) {
    const int i = i0 + a;
    if (i < b.k) {
      float v[kTC];
#pragma unroll
      for (int c = 0; c < kTC; ++c) v[c] = acc[a][c] * scale;
      cuda::StoreFloats<T, kTC>(v, vector, dst_row + i * p + c0);
    }
  }
}

// Persistent: block b transforms rows b, b + gridDim.x, ... . blockDim.x = k·kTeam rounded up to
// a warp, at most kMaxThreads (512 leaves the compiler 128 registers, 1024 only 64); teams ≥ k
// (only when kTeam < 32) hold no chunk. The base is staged once per block.
// While the block mixes row r, the raw elements of its next row are already being loaded into
// registers. Row r is read completely (into registers) before the barrier that precedes its
// mixing, and only this block touches row r, so `in` may equal `out`.
template <typename T, int kLogP, int kMaxThreads>
__global__ void __launch_bounds__(kMaxThreads)
    KroneckerKernel(const T* in, T* out, int64_t rows, int k, const float* base, bool transpose,
                    bool base_shared, float scale) {
  using S = KroneckerShape<T, kLogP>;
  constexpr int kChunks = S::kR / S::kVc;
  constexpr int kVecBytes = S::kVc * static_cast<int>(sizeof(T));
  extern __shared__ float4 kron_shared[];
  float* y = reinterpret_cast<float*>(kron_shared);
  const int n = k * S::kP;
  const int tiles_i = (k + kTileI - 1) / kTileI;  // output chunk tiles
  const int kpad = tiles_i * kTileI;
  float* sb = y + (n + 3) / 4 * 4;
  if (base_shared) {
    for (int idx = static_cast<int>(threadIdx.x); idx < k * kpad;
         idx += static_cast<int>(blockDim.x)) {
      const int j = idx / kpad;
      const int i = idx - j * kpad;
      sb[idx] = i < k ? base[transpose ? j * k + i : i * k + j] : 0.0f;
    }
  }
  const Coefficients coef{base_shared ? sb : base, k, kpad, transpose};

  const int team = static_cast<int>(threadIdx.x) / S::kTeam;
  const int t = static_cast<int>(threadIdx.x) % S::kTeam;
  const bool has_chunk = team < k;
  const bool vector_in = IsAligned(in, kVecBytes);

  // Mixing tiles: a warp covers li × lc thread tiles (li tiles of kTileI output chunks times
  // lc groups of kTileC columns), so its coefficient and y reads are a few distinct float4s.
  const int col_groups = S::kP / S::kTileC;
  const int li0 = Min(8, CeilPow2(tiles_i));
  const int lc = Min(32 / li0, col_groups);
  const int li = 32 / lc;
  const int warp_cols = col_groups / lc;
  const int warp_tiles = (tiles_i + li - 1) / li * warp_cols;
  const int warp = static_cast<int>(threadIdx.x) / 32;
  const int lane = static_cast<int>(threadIdx.x) % 32;
  const int warps = static_cast<int>(blockDim.x) / 32;
  const bool vector_out = IsAligned(out, S::kTileC * static_cast<int>(sizeof(T)));

  cuda::Vec<T, S::kVc> raw[kChunks];
  auto load_row = [&](int64_t r) {
    const T* src = in + r * n + team * S::kP;
#pragma unroll
    for (int c = 0; c < kChunks; ++c) {
      const T* p = src + (c * S::kTeam + t) * S::kVc;
      if (vector_in) {
        raw[c] = *reinterpret_cast<const cuda::Vec<T, S::kVc>*>(p);
      } else {
#pragma unroll
        for (int v = 0; v < S::kVc; ++v) raw[c].v[v] = p[v];
      }
    }
  };
  int64_t row = blockIdx.x;
  if (row < rows && has_chunk) load_row(row);
  for (; row < rows; row += gridDim.x) {
    float x[S::kR];
#pragma unroll
    for (int c = 0; c < kChunks; ++c) {
#pragma unroll
      for (int v = 0; v < S::kVc; ++v) {
        x[c * S::kVc + v] = has_chunk ? cuda::ToFloat(raw[c].v[v]) : 0.0f;
      }
    }
    RegisterFwht<S::kR>(x);
    ShuffleFwht<Min(S::kTeam, 32), S::kR>(x);
    float* s = y + team * S::kP;  // inside y only when has_chunk
    if (has_chunk) StoreTeam<S::kR, S::kVc, S::kTeam>(x, s, t);
    if constexpr (S::kTeam > 32) {
      // Teams of whole warps: blockDim.x = k·kTeam exactly, so every team has a chunk.
      __syncthreads();
      CrossWarpFwht<S::kR, S::kVc, S::kTeam>(x, s, t);
    }
    __syncthreads();  // y (and the staged base) complete
    const int64_t next = row + gridDim.x;
    if (next < rows && has_chunk) load_row(next);
    T* dst_row = out + row * n;
    for (int wt = warp; wt < warp_tiles; wt += warps) {
      const int it = wt / warp_cols * li + lane / lc;
      const int cg = wt % warp_cols * lc + lane % lc;
      if (it >= tiles_i) continue;
      if (base_shared) {
        MixTile<T, S::kTileC, true>(y, S::kP, coef, it * kTileI, cg * S::kTileC, scale, vector_out,
                                    dst_row);
      } else {
        MixTile<T, S::kTileC, false>(y, S::kP, coef, it * kTileI, cg * S::kTileC, scale, vector_out,
                                     dst_row);
      }
    }
    __syncthreads();  // y is rewritten by the next row
  }
}

template <typename T, int kLogP>
const char* LaunchKronecker(const void* in, void* out, int64_t rows, int k, const float* base,
                            bool transpose, float scale, cudaStream_t stream) {
  using S = KroneckerShape<T, kLogP>;
  const int threads = (k * S::kTeam + 31) / 32 * 32;
  const int kpad = (k + kTileI - 1) / kTileI * kTileI;
  const int64_t row_bytes = (int64_t{k} * S::kP + 3) / 4 * 4 * 4;
  const int64_t base_bytes = int64_t{k} * kpad * 4;
  int device = 0;
  int max_shared = 0;
  int sms = 0;
  cudaError_t error = cudaGetDevice(&device);
  if (error == cudaSuccess) {
    error = cudaDeviceGetAttribute(&max_shared, cudaDevAttrMaxSharedMemoryPerBlockOptin, device);
  }
  if (error == cudaSuccess) {
    error = cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device);
  }
  if (error != cudaSuccess) return cudaGetErrorString(error);
  const bool base_shared = row_bytes + base_bytes <= max_shared;
  const int64_t bytes = row_bytes + (base_shared ? base_bytes : 0);
  if (bytes > max_shared) {
    return "Hadamard transform on CUDA: the row does not fit in shared memory";
  }
  auto* kernel = threads <= 512 ? KroneckerKernel<T, kLogP, 512> : KroneckerKernel<T, kLogP, 1024>;
  if (bytes > kDefaultSharedBytes) {
    error = cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                 static_cast<int>(bytes));
    if (error != cudaSuccess) return cudaGetErrorString(error);
  }
  int per_sm = 0;
  error = cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, kernel, threads,
                                                        static_cast<size_t>(bytes));
  if (error != cudaSuccess) return cudaGetErrorString(error);
  if (per_sm < 1) return "Hadamard transform on CUDA: the kernel does not fit on the device";
  const int64_t blocks = std::min<int64_t>(rows, int64_t{per_sm} * sms);
  kernel<<<static_cast<unsigned>(blocks), threads, static_cast<size_t>(bytes), stream>>>(
      static_cast<const T*>(in), static_cast<T*>(out), rows, k, base, transpose, base_shared,
      scale);
  return cuda::LaunchResult();
}

template <typename T, int kLogP = 0>
const char* DispatchKronecker(int log_p, const void* in, void* out, int64_t rows, int k,
                              const float* base, bool transpose, float scale, cudaStream_t stream) {
  if constexpr (kLogP > kMaxLogP) {
    return "Hadamard transform on CUDA supports rows of at most 32768 elements";
  } else {
    if (log_p == kLogP) {
      return LaunchKronecker<T, kLogP>(in, out, rows, k, base, transpose, scale, stream);
    }
    return DispatchKronecker<T, kLogP + 1>(log_p, in, out, rows, k, base, transpose, scale, stream);
  }
}

template <typename T>
const char* LaunchType(const void* in, void* out, int64_t rows, int log_p, int64_t k,
                       const float* base, float scale, bool transpose, cudaStream_t stream) {
  if (k == 1) return DispatchFwht<T>(log_p, in, out, rows, scale, stream);
  return DispatchKronecker<T>(log_p, in, out, rows, static_cast<int>(k), base, transpose, scale,
                              stream);
}

const char* Dispatch(const void* in, void* out, DeviceDType dtype, int64_t rows, int64_t n,
                     int log_p, int64_t k, const float* base, float scale, bool transpose,
                     void* stream) {
  if (rows <= 0) return "";
  if (n > kMaxRow) return "Hadamard transform on CUDA supports rows of at most 32768 elements";
  if (k > 1024) return "Hadamard transform on CUDA supports base orders of at most 1024";
  if (k < 1 || log_p < 0 || (k << log_p) != n) {
    return "Hadamard transform on CUDA: n must equal base order times 2^log2_pow2";
  }
  if (k > 1 && base == nullptr) return "Hadamard transform on CUDA needs the base on the device";
  auto* s = static_cast<cudaStream_t>(stream);
  switch (dtype) {
    case DeviceDType::kFloat32:
      return LaunchType<float>(in, out, rows, log_p, k, base, scale, transpose, s);
    case DeviceDType::kFloat16:
      return LaunchType<__half>(in, out, rows, log_p, k, base, scale, transpose, s);
    case DeviceDType::kBFloat16:
      return LaunchType<__nv_bfloat16>(in, out, rows, log_p, k, base, scale, transpose, s);
  }
  return "unknown dtype";
}

}  // namespace

const char* HadamardTransformCuda(const void* in, void* out, DeviceDType dtype, int64_t rows,
                                  const HadamardFactors& factors, const float* base_device,
                                  bool orthonormal, bool transpose, void* stream) {
  const float scale = orthonormal ? OrthonormalScale(factors.n) : 1.0f;
  return Dispatch(in, out, dtype, rows, factors.n, factors.log2_pow2, factors.base_order,
                  base_device, scale, transpose, stream);
}

const char* FwhtCuda(const void* in, void* out, DeviceDType dtype, int64_t rows, int64_t n,
                     float scale, void* stream) {
  if (!IsPowerOfTwo(n)) return "FWHT needs a power-of-two row length";
  int log_n = 0;
  while ((int64_t{1} << log_n) < n) ++log_n;
  return Dispatch(in, out, dtype, rows, n, log_n, 1, nullptr, scale, false, stream);
}

}  // namespace quantd::kernels
