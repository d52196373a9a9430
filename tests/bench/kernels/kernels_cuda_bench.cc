// Bandwidth of the CUDA kernels against the device's measured copy bandwidth (issue 10, item 5).
// Each kernel reads and writes its buffer once, so GB/s = 2 · bytes / time; the goal is ≥ 80 %
// of a device-to-device cudaMemcpy. Prints a table; exits 0 with a note when no device is found.
// Run: kernels_cuda_bench [elements, default 2^26]
#include <cuda_runtime.h>

#include <cstdio>
#include <cstdlib>
#include <functional>
#include <string>
#include <vector>

#include "kernels/device.h"
#include "kernels/fake_quant.h"
#include "kernels/fwht.h"
#include "kernels/hadamard.h"

namespace quantd::kernels {
namespace {

constexpr int kWarmup = 3;
constexpr int kIters = 20;

#define BENCH_CHECK(expr)                                                        \
  do {                                                                           \
    const cudaError_t bench_error_ = (expr);                                     \
    if (bench_error_ != cudaSuccess) {                                           \
      std::fprintf(stderr, "%s: %s\n", #expr, cudaGetErrorString(bench_error_)); \
      std::exit(1);                                                              \
    }                                                                            \
  } while (0)

// Mean milliseconds per call of `launch` (which returns "" or an error text).
double TimeMs(const std::function<const char*()>& launch) {
  for (int i = 0; i < kWarmup; ++i) {
    const char* error = launch();
    if (error[0] != '\0') {
      std::fprintf(stderr, "launch failed: %s\n", error);
      std::exit(1);
    }
  }
  cudaEvent_t start, stop;
  BENCH_CHECK(cudaEventCreate(&start));
  BENCH_CHECK(cudaEventCreate(&stop));
  BENCH_CHECK(cudaEventRecord(start));
  for (int i = 0; i < kIters; ++i) launch();
  BENCH_CHECK(cudaEventRecord(stop));
  BENCH_CHECK(cudaEventSynchronize(stop));
  float ms = 0;
  BENCH_CHECK(cudaEventElapsedTime(&ms, start, stop));
  cudaEventDestroy(start);
  cudaEventDestroy(stop);
  return ms / kIters;
}

void Row(const std::string& name, double bytes_moved, double ms, double copy_gbs) {
  const double gbs = bytes_moved / (ms * 1e-3) / 1e9;
  std::printf("%-40s %9.3f ms %9.1f GB/s %6.1f %%\n", name.c_str(), ms, gbs, 100 * gbs / copy_gbs);
}

int Run(int64_t elements) {
  if (!CudaKernelsAvailable()) {
    std::printf("no CUDA device (or a build without CUDA): nothing to measure\n");
    return 0;
  }
  cudaDeviceProp prop;
  BENCH_CHECK(cudaGetDeviceProperties(&prop, 0));
  std::printf("device: %s, %lld elements per buffer\n", prop.name,
              static_cast<long long>(elements));
  void* a = nullptr;
  void* b = nullptr;
  BENCH_CHECK(cudaMalloc(&a, elements * sizeof(float)));
  BENCH_CHECK(cudaMalloc(&b, elements * sizeof(float)));
  BENCH_CHECK(cudaMemset(a, 0, elements * sizeof(float)));
  const double fp32_bytes = 2.0 * elements * sizeof(float);
  const double copy_ms = TimeMs([&] {
    const cudaError_t e = cudaMemcpyAsync(b, a, elements * sizeof(float), cudaMemcpyDeviceToDevice);
    return e == cudaSuccess ? "" : cudaGetErrorString(e);
  });
  const double copy_gbs = fp32_bytes / (copy_ms * 1e-3) / 1e9;
  std::printf("%-40s %9.3f ms %9.1f GB/s  (reference)\n", "cudaMemcpy D2D fp32", copy_ms, copy_gbs);

  struct Type {
    DeviceDType dtype;
    const char* name;
    int bytes;
  };
  const Type types[] = {{DeviceDType::kFloat32, "fp32", 4}, {DeviceDType::kBFloat16, "bf16", 2}};
  for (int64_t n : {1024, 4096, 32768, 5120, 11008, 13824, 14336, 28672}) {
    const HadamardFactors f = FactorHadamard(n);
    float* base = nullptr;
    BENCH_CHECK(cudaMalloc(&base, f.base.size() * sizeof(float)));
    BENCH_CHECK(
        cudaMemcpy(base, f.base.data(), f.base.size() * sizeof(float), cudaMemcpyHostToDevice));
    const int64_t rows = elements / n;
    for (const Type& t : types) {
      const double ms = TimeMs([&] {
        return HadamardTransformCuda(a, b, t.dtype, rows, f, f.base_order > 1 ? base : nullptr,
                                     true, false, nullptr);
      });
      Row("hadamard " + std::to_string(n) + " " + t.name + " (k=" + std::to_string(f.base_order) +
              ")",
          2.0 * rows * n * t.bytes, ms, copy_gbs);
    }
    cudaFree(base);
  }
  const int64_t cols = 4096;
  const int64_t rows = elements / cols;
  float* scales = nullptr;
  BENCH_CHECK(cudaMalloc(&scales, rows * (cols / 32) * sizeof(float)));
  const std::pair<const char*, FakeQuantConfig> configs[] = {
      {"per token w8", {8, QuantGranularity::kPerToken, 0}},
      {"per group 128 w4", {4, QuantGranularity::kPerGroup, 128}},
      {"per tensor w8", {8, QuantGranularity::kPerTensor, 0}}};
  for (const auto& [label, config] : configs) {
    for (const Type& t : types) {
      const double dynamic_ms = TimeMs([&] {
        return FakeQuantizeDynamicCuda(a, b, t.dtype, rows, cols, config, 1.0f, scales, nullptr);
      });
      Row(std::string("fake quant dynamic ") + label + " " + t.name, 2.0 * rows * cols * t.bytes,
          dynamic_ms, copy_gbs);
      const double static_ms = TimeMs(
          [&] { return FakeQuantizeCuda(a, b, t.dtype, rows, cols, config, scales, nullptr); });
      Row(std::string("fake quant static ") + label + " " + t.name, 2.0 * rows * cols * t.bytes,
          static_ms, copy_gbs);
    }
  }
  cudaFree(scales);
  cudaFree(a);
  cudaFree(b);
  return 0;
}

}  // namespace
}  // namespace quantd::kernels

int main(int argc, char** argv) {
  const int64_t elements = argc > 1 ? std::atoll(argv[1]) : (int64_t{1} << 26);
  return quantd::kernels::Run(elements);
}
