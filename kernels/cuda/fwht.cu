#include <algorithm>

#include "kernels/cuda/common.cuh"
#include "kernels/fwht.h"

namespace quantd::kernels {
namespace {

constexpr int64_t kMaxRow = 32768;
constexpr int kDefaultSharedBytes = 48 * 1024;

// One block per row: the row is held in shared memory (fp32); butterfly stages of the Sylvester
// part run inside every chunk of length p; then, for k > 1, output chunk i is the base row i
// (column i with `transpose`) mixed over the chunks, written to `out`. Every read of `in`
// happens before the first barrier and every write after it, so `in` may equal `out`.
template <typename T>
__global__ void HadamardRowsKernel(const T* in, T* out, int n, int p, int k, const float* base,
                                   float scale, bool transpose) {
  extern __shared__ float s[];
  const T* src = in + static_cast<int64_t>(blockIdx.x) * n;
  T* row = out + static_cast<int64_t>(blockIdx.x) * n;
  for (int i = threadIdx.x; i < n; i += blockDim.x) s[i] = cuda::ToFloat(src[i]);
  __syncthreads();
  const int half = n / 2;
  for (int h = 1; h < p; h <<= 1) {
    for (int t = threadIdx.x; t < half; t += blockDim.x) {
      const int i = (t / h) * 2 * h + (t & (h - 1));
      const float a = s[i];
      const float b = s[i + h];
      s[i] = a + b;
      s[i + h] = a - b;
    }
    __syncthreads();
  }
  if (k == 1) {
    for (int i = threadIdx.x; i < n; i += blockDim.x) row[i] = cuda::FromFloat<T>(s[i] * scale);
    return;
  }
  for (int e = threadIdx.x; e < n; e += blockDim.x) {
    const int i = e / p;
    const int c = e - i * p;
    float acc = 0.0f;
    for (int j = 0; j < k; ++j) {
      acc += (transpose ? base[j * k + i] : base[i * k + j]) * s[j * p + c];
    }
    row[e] = cuda::FromFloat<T>(acc * scale);
  }
}

template <typename T>
const char* Launch(const void* in, void* out, int64_t rows, int64_t n, int64_t p, int64_t k,
                   const float* base, float scale, bool transpose, cudaStream_t stream) {
  const int bytes = static_cast<int>(n * sizeof(float));
  if (bytes > kDefaultSharedBytes) {
    const cudaError_t error = cudaFuncSetAttribute(
        HadamardRowsKernel<T>, cudaFuncAttributeMaxDynamicSharedMemorySize, bytes);
    if (error != cudaSuccess) return cudaGetErrorString(error);
  }
  const int threads =
      static_cast<int>(std::min<int64_t>(1024, std::max<int64_t>(32, (n / 2 + 31) / 32 * 32)));
  HadamardRowsKernel<T><<<static_cast<unsigned>(rows), threads, bytes, stream>>>(
      static_cast<const T*>(in), static_cast<T*>(out), static_cast<int>(n), static_cast<int>(p),
      static_cast<int>(k), base, scale, transpose);
  return cuda::LaunchResult();
}

const char* Dispatch(const void* in, void* out, DeviceDType dtype, int64_t rows, int64_t n,
                     int64_t p, int64_t k, const float* base, float scale, bool transpose,
                     void* stream) {
  if (rows <= 0) return "";
  if (n > kMaxRow) return "Hadamard transform on CUDA supports rows of at most 32768 elements";
  if (k > 1024) return "Hadamard transform on CUDA supports base orders of at most 1024";
  if (k > 1 && base == nullptr) return "Hadamard transform on CUDA needs the base on the device";
  if (rows > 0x7fffffff) return "too many rows for one launch";
  auto* s = static_cast<cudaStream_t>(stream);
  switch (dtype) {
    case DeviceDType::kFloat32:
      return Launch<float>(in, out, rows, n, p, k, base, scale, transpose, s);
    case DeviceDType::kFloat16:
      return Launch<__half>(in, out, rows, n, p, k, base, scale, transpose, s);
    case DeviceDType::kBFloat16:
      return Launch<__nv_bfloat16>(in, out, rows, n, p, k, base, scale, transpose, s);
  }
  return "unknown dtype";
}

}  // namespace

const char* HadamardTransformCuda(const void* in, void* out, DeviceDType dtype, int64_t rows,
                                  const HadamardFactors& factors, const float* base_device,
                                  bool orthonormal, bool transpose, void* stream) {
  const float scale = orthonormal ? OrthonormalScale(factors.n) : 1.0f;
  return Dispatch(in, out, dtype, rows, factors.n, int64_t{1} << factors.log2_pow2,
                  factors.base_order, base_device, scale, transpose, stream);
}

const char* FwhtCuda(const void* in, void* out, DeviceDType dtype, int64_t rows, int64_t n,
                     float scale, void* stream) {
  if (!IsPowerOfTwo(n)) return "FWHT needs a power-of-two row length";
  return Dispatch(in, out, dtype, rows, n, n, 1, nullptr, scale, false, stream);
}

}  // namespace quantd::kernels
