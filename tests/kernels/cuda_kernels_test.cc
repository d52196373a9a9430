// CUDA twins against their CPU versions. *_CUDA tests skip without a device.
#include <cmath>
#include <random>
#include <vector>

#include "gtest/gtest.h"
#include "kernels/device.h"
#include "kernels/fake_quant.h"
#include "kernels/fwht.h"
#include "kernels/hadamard.h"

#ifdef QUANTD_WITH_CUDA
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>
#endif

namespace quantd::kernels {
namespace {

TEST(CudaKernelsTest, ArgumentChecksNeedNoDevice) {
  EXPECT_STRNE(FwhtCuda(nullptr, nullptr, DeviceDType::kFloat32, 1, 65536, 1.0f, nullptr), "");
  EXPECT_STRNE(FwhtCuda(nullptr, nullptr, DeviceDType::kFloat32, 1, 96, 1.0f, nullptr), "");
  const FakeQuantConfig bad{4, QuantGranularity::kPerGroup, 3};
  EXPECT_STRNE(
      FakeQuantizeCuda(nullptr, nullptr, DeviceDType::kFloat32, 2, 8, bad, nullptr, nullptr), "");
}

#ifdef QUANTD_WITH_CUDA
std::vector<float> Gaussian(int64_t count, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> dist(0.0f, 1.0f);
  std::vector<float> x(count);
  for (auto& v : x) v = dist(rng);
  return x;
}

// Device buffer of T, freed on scope exit.
template <typename T>
class DeviceBuffer {
 public:
  explicit DeviceBuffer(size_t count) : count_(count) {
    EXPECT_EQ(cudaMalloc(&ptr_, count * sizeof(T)), cudaSuccess);
  }
  explicit DeviceBuffer(const std::vector<T>& host) : DeviceBuffer(host.size()) {
    EXPECT_EQ(cudaMemcpy(ptr_, host.data(), count_ * sizeof(T), cudaMemcpyHostToDevice),
              cudaSuccess);
  }
  ~DeviceBuffer() { cudaFree(ptr_); }
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;
  T* get() { return ptr_; }
  std::vector<T> ToHost() const {
    std::vector<T> host(count_);
    EXPECT_EQ(cudaMemcpy(host.data(), ptr_, count_ * sizeof(T), cudaMemcpyDeviceToHost),
              cudaSuccess);
    return host;
  }

 private:
  size_t count_;
  T* ptr_ = nullptr;
};
#endif

TEST(CudaKernelsTest, HadamardTransform_CUDA) {
  if (!CudaKernelsAvailable()) GTEST_SKIP() << "no CUDA device";
#ifdef QUANTD_WITH_CUDA
  for (int64_t n : {8, 64, 172, 4096, 5120, 11008, 13824, 14336, 28672, 32768}) {
    const HadamardFactors f = FactorHadamard(n);
    const int64_t rows = 5;
    for (bool transpose : {false, true}) {
      const std::vector<float> x = Gaussian(rows * n, static_cast<uint32_t>(n));
      std::vector<float> want = x;
      HadamardTransformRows(f, want.data(), rows, /*orthonormal=*/true, transpose);
      DeviceBuffer<float> data(x);
      DeviceBuffer<float> result(x.size());
      DeviceBuffer<float> base(f.base);
      // Out of place for M, in place for Mᵀ: both paths of the kernel.
      float* out = transpose ? data.get() : result.get();
      ASSERT_STREQ(
          HadamardTransformCuda(data.get(), out, DeviceDType::kFloat32, rows, f,
                                f.base_order > 1 ? base.get() : nullptr, true, transpose, nullptr),
          "");
      ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
      const std::vector<float> got = transpose ? data.ToHost() : result.ToHost();
      if (!transpose) {
        EXPECT_EQ(data.ToHost(), x) << "input changed out of place";
      }
      for (size_t i = 0; i < got.size(); ++i) ASSERT_NEAR(got[i], want[i], 1e-4) << n << " " << i;
    }
  }
#endif
}

#ifdef QUANTD_WITH_CUDA
// Host-side conversions of the 16-bit device types.
float ToFloat(__nv_bfloat16 v) { return __bfloat162float(v); }
float ToFloat(__half v) { return __half2float(v); }
template <typename T>
T FromFloat(float v);
template <>
__nv_bfloat16 FromFloat<__nv_bfloat16>(float v) {
  return __float2bfloat16(v);
}
template <>
__half FromFloat<__half>(float v) {
  return __float2half(v);
}

// Rounds x to T; `rounded` receives the values the device will see.
template <typename T>
std::vector<T> ToHalfType(const std::vector<float>& x, std::vector<float>* rounded) {
  std::vector<T> out(x.size());
  rounded->resize(x.size());
  for (size_t i = 0; i < x.size(); ++i) {
    out[i] = FromFloat<T>(x[i]);
    (*rounded)[i] = ToFloat(out[i]);
  }
  return out;
}

// 16-bit FWHT against the CPU on the same rounded inputs: one rounding of the output
// (half an ulp: up to 2^-8 relative for bf16, 2^-11 for fp16; the tests allow twice that).
template <typename T>
void CheckFwhtHalf(DeviceDType dtype, float rel) {
  const int64_t n = 4096, rows = 3;
  std::vector<float> want;
  const std::vector<T> xh = ToHalfType<T>(Gaussian(rows * n, 3), &want);
  FwhtRows(want.data(), rows, n, OrthonormalScale(n));
  DeviceBuffer<T> data(xh);
  ASSERT_STREQ(FwhtCuda(data.get(), data.get(), dtype, rows, n, OrthonormalScale(n), nullptr), "");
  const auto got = data.ToHost();
  for (size_t i = 0; i < got.size(); ++i) {
    ASSERT_NEAR(ToFloat(got[i]), want[i], std::fabs(want[i]) * rel + 1e-5) << i;
  }
}

// 16-bit dynamic fake quantization: scales equal the CPU's on the rounded inputs (fp32 math);
// values differ from the CPU's by at most the output rounding.
template <typename T>
void CheckFakeQuantHalf(DeviceDType dtype, float rel) {
  const int64_t rows = 17, cols = 512;
  const FakeQuantConfig config{4, QuantGranularity::kPerGroup, 128};
  std::vector<float> rounded;
  const std::vector<T> xh = ToHalfType<T>(Gaussian(rows * cols, 5), &rounded);
  const int64_t count = NumScales(config, rows, cols);
  std::vector<float> want(rounded.size()), want_scales(count);
  FakeQuantizeDynamic(rounded.data(), rows, cols, config, 1.0f, want.data(), want_scales.data());
  DeviceBuffer<T> in(xh);
  DeviceBuffer<T> out(xh.size());
  DeviceBuffer<float> scales(count);
  ASSERT_STREQ(FakeQuantizeDynamicCuda(in.get(), out.get(), dtype, rows, cols, config, 1.0f,
                                       scales.get(), nullptr),
               "");
  EXPECT_EQ(scales.ToHost(), want_scales);
  const auto got = out.ToHost();
  for (size_t i = 0; i < got.size(); ++i) {
    ASSERT_NEAR(ToFloat(got[i]), want[i], std::fabs(want[i]) * rel) << i;
  }
}
#endif

TEST(CudaKernelsTest, FwhtHalfTypes_CUDA) {
  if (!CudaKernelsAvailable()) GTEST_SKIP() << "no CUDA device";
#ifdef QUANTD_WITH_CUDA
  CheckFwhtHalf<__nv_bfloat16>(DeviceDType::kBFloat16, 1.0f / 128);
  CheckFwhtHalf<__half>(DeviceDType::kFloat16, 1.0f / 1024);
#endif
}

TEST(CudaKernelsTest, FakeQuantizeHalfTypes_CUDA) {
  if (!CudaKernelsAvailable()) GTEST_SKIP() << "no CUDA device";
#ifdef QUANTD_WITH_CUDA
  CheckFakeQuantHalf<__nv_bfloat16>(DeviceDType::kBFloat16, 1.0f / 128);
  CheckFakeQuantHalf<__half>(DeviceDType::kFloat16, 1.0f / 1024);
#endif
}

TEST(CudaKernelsTest, FakeQuantize_CUDA) {
  if (!CudaKernelsAvailable()) GTEST_SKIP() << "no CUDA device";
#ifdef QUANTD_WITH_CUDA
  const int64_t rows = 33, cols = 1024;
  const std::vector<FakeQuantConfig> configs = {{4, QuantGranularity::kPerTensor, 0},
                                                {8, QuantGranularity::kPerToken, 0},
                                                {4, QuantGranularity::kPerGroup, 128},
                                                {3, QuantGranularity::kPerGroup, 32}};
  for (const FakeQuantConfig& config : configs) {
    const std::vector<float> x = Gaussian(rows * cols, config.bits);
    const int64_t count = NumScales(config, rows, cols);
    std::vector<float> want(x.size()), want_scales(count);
    FakeQuantizeDynamic(x.data(), rows, cols, config, 0.9f, want.data(), want_scales.data());
    DeviceBuffer<float> in(x);
    DeviceBuffer<float> out(x.size());
    DeviceBuffer<float> scales(count);
    ASSERT_STREQ(FakeQuantizeDynamicCuda(in.get(), out.get(), DeviceDType::kFloat32, rows, cols,
                                         config, 0.9f, scales.get(), nullptr),
                 "");
    EXPECT_EQ(scales.ToHost(), want_scales);  // same fp32 operations: bitwise equal
    EXPECT_EQ(out.ToHost(), want);
    // Static with the same scales, in place.
    ASSERT_STREQ(FakeQuantizeCuda(in.get(), in.get(), DeviceDType::kFloat32, rows, cols, config,
                                  scales.get(), nullptr),
                 "");
    EXPECT_EQ(in.ToHost(), want);
  }
#endif
}

}  // namespace
}  // namespace quantd::kernels
