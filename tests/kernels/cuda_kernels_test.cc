// CUDA twins against their CPU versions. *_CUDA tests skip without a device.
#include <algorithm>
#include <cmath>
#include <random>
#include <string>
#include <type_traits>
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

#ifdef QUANTD_WITH_CUDA
// Every path of the CUDA kernels against the CPU twins: all FWHT sizes, the k > 1 sizes, odd
// row counts, in place and out of place, pointers one element past an aligned address (the
// kernels' scalar fall-backs), and the three element types.

float HostFloat(float v) { return v; }
float HostFloat(__half v) { return __half2float(v); }
float HostFloat(__nv_bfloat16 v) { return __bfloat162float(v); }

template <typename T>
T HostRound(float v) {
  if constexpr (std::is_same_v<T, float>) {
    return v;
  } else {
    return FromFloat<T>(v);
  }
}

template <typename T>
DeviceDType DTypeOf() {
  if constexpr (std::is_same_v<T, float>) return DeviceDType::kFloat32;
  if constexpr (std::is_same_v<T, __half>) return DeviceDType::kFloat16;
  return DeviceDType::kBFloat16;
}

// Relative tolerance of one output rounding to T (a whole ulp: the device sums in another order,
// so a value near a rounding boundary may round the other way).
template <typename T>
float OutputUlp() {
  if constexpr (std::is_same_v<T, float>) return 1e-5f;
  if constexpr (std::is_same_v<T, __half>) return 1.0f / 1024;
  return 1.0f / 128;
}

// `count` elements of T on the device starting `offset` elements past a 256-byte aligned
// allocation (offset 1: not 16-byte aligned).
template <typename T>
class OffsetBuffer {
 public:
  OffsetBuffer(size_t count, size_t offset) : buffer_(count + offset), count_(count) {
    data_ = buffer_.get() + offset;
  }
  T* data() { return data_; }
  void Upload(const std::vector<T>& host) {
    ASSERT_EQ(host.size(), count_);
    ASSERT_EQ(cudaMemcpy(data_, host.data(), count_ * sizeof(T), cudaMemcpyHostToDevice),
              cudaSuccess);
  }
  std::vector<T> Download() const {
    std::vector<T> host(count_);
    EXPECT_EQ(cudaMemcpy(host.data(), data_, count_ * sizeof(T), cudaMemcpyDeviceToHost),
              cudaSuccess);
    return host;
  }

 private:
  DeviceBuffer<T> buffer_;
  size_t count_;
  T* data_;
};

struct Layout {
  bool in_place;
  size_t offset;  // elements past an aligned address, for input and output
};

// Odd, at least `min_rows`, about 2^21 elements in all.
int64_t OddRows(int64_t n, int64_t min_rows) {
  return std::max<int64_t>(min_rows, (int64_t{1} << 21) / n) | 1;
}

// Runs `launch(in, out)` on the rows x (rounded to T) in the given layout and compares with
// `want` (the CPU result on the rounded inputs) within one output ulp plus `abs_tol`. Out of
// place, the input must be unchanged.
template <typename T, typename Launch>
void CompareRows(const std::vector<float>& x, const std::vector<float>& want, Layout layout,
                 float abs_tol, const std::string& what, Launch launch) {
  std::vector<T> xt(x.size());
  for (size_t i = 0; i < x.size(); ++i) xt[i] = HostRound<T>(x[i]);
  OffsetBuffer<T> in(x.size(), layout.offset);
  in.Upload(xt);
  OffsetBuffer<T> out(layout.in_place ? 0 : x.size(), layout.offset);
  T* dst = layout.in_place ? in.data() : out.data();
  ASSERT_STREQ(launch(in.data(), dst), "") << what;
  ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess) << what;
  const std::vector<T> got = layout.in_place ? in.Download() : out.Download();
  for (size_t i = 0; i < got.size(); ++i) {
    ASSERT_NEAR(HostFloat(got[i]), want[i], std::fabs(want[i]) * OutputUlp<T>() + abs_tol)
        << what << " element " << i;
  }
  if (!layout.in_place) {
    const std::vector<T> after = in.Download();
    for (size_t i = 0; i < after.size(); ++i) {
      ASSERT_EQ(HostFloat(after[i]), HostFloat(xt[i])) << what << ": input changed at " << i;
    }
  }
}

// x rounded to T and back: the values the device sees.
template <typename T>
std::vector<float> RoundedTo(std::vector<float> x) {
  for (float& v : x) v = HostFloat(HostRound<T>(v));
  return x;
}

template <typename T>
void CheckFwhtAllSizes(Layout layout) {
  for (int log_n = 0; log_n <= 15; ++log_n) {
    const int64_t n = int64_t{1} << log_n;
    const int64_t rows = OddRows(n, 3);
    const std::vector<float> x = RoundedTo<T>(Gaussian(rows * n, static_cast<uint32_t>(n + 7)));
    std::vector<float> want = x;
    const float scale = OrthonormalScale(n);
    FwhtRows(want.data(), rows, n, scale);
    const std::string what = "FWHT n=" + std::to_string(n) + " rows=" + std::to_string(rows) +
                             (layout.in_place ? " in place" : " out of place") +
                             " offset=" + std::to_string(layout.offset);
    CompareRows<T>(x, want, layout, 2e-5f, what, [&](const T* in, T* out) {
      return FwhtCuda(in, out, DTypeOf<T>(), rows, n, scale, nullptr);
    });
  }
}

// The k > 1 sizes: K·2^m for K = 12, 20, 28, 40 up to 32768, 172·64 (Williamson), 172 (p = 1),
// 108·128, 1000 = 500·2 (a base too large for shared memory: read from global memory), 6 = 3·2
// (the random orthogonal base).
std::vector<int64_t> KroneckerSizes() {
  std::vector<int64_t> sizes = {172 * 64, 172, 108 * 128, 1000, 6};
  for (int64_t k : {12, 20, 28, 40}) {
    for (int64_t n = k; n <= 32768; n *= 2) sizes.push_back(n);
  }
  return sizes;
}

template <typename T>
void CheckKronecker(Layout layout, bool transpose) {
  for (int64_t n : KroneckerSizes()) {
    const HadamardFactors f = FactorHadamard(n);
    ASSERT_GT(f.base_order, 1) << n;
    // More rows than the persistent grid has blocks, so blocks loop (and prefetch) over rows.
    const int64_t rows = OddRows(n, 301);
    const std::vector<float> x = RoundedTo<T>(Gaussian(rows * n, static_cast<uint32_t>(n)));
    std::vector<float> want = x;
    HadamardTransformRows(f, want.data(), rows, /*orthonormal=*/true, transpose);
    DeviceBuffer<float> base(f.base);
    const std::string what = "Hadamard n=" + std::to_string(n) + " (" + f.construction +
                             ") rows=" + std::to_string(rows) + (transpose ? " transposed" : "") +
                             (layout.in_place ? " in place" : " out of place") +
                             " offset=" + std::to_string(layout.offset);
    CompareRows<T>(x, want, layout, 1e-4f, what, [&](const T* in, T* out) {
      return HadamardTransformCuda(in, out, DTypeOf<T>(), rows, f, base.get(), true, transpose,
                                   nullptr);
    });
  }
}
#endif

TEST(CudaKernelsTest, FwhtAllSizes_CUDA) {
  if (!CudaKernelsAvailable()) GTEST_SKIP() << "no CUDA device";
#ifdef QUANTD_WITH_CUDA
  CheckFwhtAllSizes<float>({false, 0});
  CheckFwhtAllSizes<float>({true, 1});
  CheckFwhtAllSizes<__half>({true, 0});
  CheckFwhtAllSizes<__half>({false, 1});
  CheckFwhtAllSizes<__nv_bfloat16>({false, 0});
  CheckFwhtAllSizes<__nv_bfloat16>({true, 1});
#endif
}

TEST(CudaKernelsTest, HadamardKroneckerSizes_CUDA) {
  if (!CudaKernelsAvailable()) GTEST_SKIP() << "no CUDA device";
#ifdef QUANTD_WITH_CUDA
  CheckKronecker<float>({false, 0}, false);
  CheckKronecker<float>({true, 1}, true);
  CheckKronecker<float>({true, 0}, true);
  CheckKronecker<__half>({false, 1}, false);
  CheckKronecker<__half>({true, 0}, true);
  CheckKronecker<__nv_bfloat16>({true, 1}, false);
  CheckKronecker<__nv_bfloat16>({false, 0}, true);
#endif
}

#ifdef QUANTD_WITH_CUDA
// Fake quantization on the rounded inputs computes exactly what the CPU computes (same fp32
// operations per element), so scales are bitwise equal and every output equals the CPU's value
// rounded once to T. Row 0 is all zeros (scale 1).
template <typename T>
void CheckFakeQuantExact(int64_t rows, int64_t cols, const FakeQuantConfig& config, Layout layout) {
  std::vector<float> x = Gaussian(rows * cols, static_cast<uint32_t>(rows * 131 + cols));
  std::fill(x.begin(), x.begin() + cols, 0.0f);
  x = RoundedTo<T>(x);
  std::vector<T> xt(x.size());
  for (size_t i = 0; i < x.size(); ++i) xt[i] = HostRound<T>(x[i]);
  const int64_t count = NumScales(config, rows, cols);
  const std::string what = "rows=" + std::to_string(rows) + " cols=" + std::to_string(cols) +
                           " bits=" + std::to_string(config.bits) +
                           " granularity=" + std::to_string(static_cast<int>(config.granularity)) +
                           " group=" + std::to_string(config.group_size) +
                           (layout.in_place ? " in place" : " out of place") +
                           " offset=" + std::to_string(layout.offset);
  auto expect_values = [&](const std::vector<T>& got, const std::vector<float>& want,
                           const char* kind) {
    ASSERT_EQ(got.size(), want.size());
    for (size_t i = 0; i < got.size(); ++i) {
      ASSERT_EQ(HostFloat(got[i]), HostFloat(HostRound<T>(want[i])))
          << kind << " " << what << " element " << i;
    }
  };
  // Dynamic (the STE path: values and scales), clip ratio 0.9 so some values clamp.
  std::vector<float> want(x.size()), want_scales(count);
  FakeQuantizeDynamic(x.data(), rows, cols, config, 0.9f, want.data(), want_scales.data());
  {
    OffsetBuffer<T> in(x.size(), layout.offset);
    in.Upload(xt);
    OffsetBuffer<T> out(layout.in_place ? 0 : x.size(), layout.offset);
    DeviceBuffer<float> scales(count);
    T* dst = layout.in_place ? in.data() : out.data();
    ASSERT_STREQ(FakeQuantizeDynamicCuda(in.data(), dst, DTypeOf<T>(), rows, cols, config, 0.9f,
                                         scales.get(), nullptr),
                 "")
        << what;
    ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess) << what;
    EXPECT_EQ(scales.ToHost(), want_scales) << "dynamic scales " << what;
    expect_values(layout.in_place ? in.Download() : out.Download(), want, "dynamic");
    if (!layout.in_place) {
      const std::vector<T> after = in.Download();
      for (size_t i = 0; i < after.size(); ++i) {
        ASSERT_EQ(HostFloat(after[i]), x[i]) << "input changed: " << what;
      }
    }
  }
  // Static with calibrated scales (the CPU's at clip 0.7: more values clamp).
  std::vector<float> scales_host(count);
  ComputeScales(x.data(), rows, cols, config, 0.7f, scales_host.data());
  FakeQuantize(x.data(), rows, cols, config, scales_host.data(), want.data());
  {
    OffsetBuffer<T> in(x.size(), layout.offset);
    in.Upload(xt);
    OffsetBuffer<T> out(layout.in_place ? 0 : x.size(), layout.offset);
    DeviceBuffer<float> scales(scales_host);
    T* dst = layout.in_place ? in.data() : out.data();
    ASSERT_STREQ(
        FakeQuantizeCuda(in.data(), dst, DTypeOf<T>(), rows, cols, config, scales.get(), nullptr),
        "")
        << what;
    ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess) << what;
    expect_values(layout.in_place ? in.Download() : out.Download(), want, "static");
  }
}

// Shapes that reach every team size (1, 2, 4, ..., 1024 threads per segment), the two-pass kernel
// for segments longer than a team holds (> 32768 elements), lengths that are not a multiple of the
// vector width, and group sizes 1, 3, 32, 128, 256.
template <typename T>
void CheckFakeQuantAll(Layout layout) {
  struct Case {
    int64_t rows, cols;
    FakeQuantConfig config;
  };
  const std::vector<Case> cases = {
      {17, 1, {8, QuantGranularity::kPerToken, 0}},
      {17, 5, {8, QuantGranularity::kPerToken, 0}},
      {17, 50, {8, QuantGranularity::kPerToken, 0}},
      {33, 100, {4, QuantGranularity::kPerToken, 0}},
      {17, 200, {8, QuantGranularity::kPerToken, 0}},
      {9, 500, {8, QuantGranularity::kPerToken, 0}},
      {9, 2000, {8, QuantGranularity::kPerToken, 0}},
      {5, 8000, {8, QuantGranularity::kPerToken, 0}},
      {33, 1023, {8, QuantGranularity::kPerToken, 0}},
      {33, 4096, {8, QuantGranularity::kPerToken, 0}},
      {5, 11008, {8, QuantGranularity::kPerToken, 0}},
      {3, 32768, {8, QuantGranularity::kPerToken, 0}},
      {3, 40001, {8, QuantGranularity::kPerToken, 0}},
      {3, 70000, {16, QuantGranularity::kPerToken, 0}},
      {9, 9, {3, QuantGranularity::kPerGroup, 3}},
      {7, 6, {4, QuantGranularity::kPerGroup, 1}},
      {33, 1024, {4, QuantGranularity::kPerGroup, 128}},
      {33, 1024, {2, QuantGranularity::kPerGroup, 32}},
      {33, 1024, {8, QuantGranularity::kPerGroup, 256}},
      {31, 4096, {4, QuantGranularity::kPerGroup, 128}},
      {1, 7, {8, QuantGranularity::kPerTensor, 0}},
      {33, 1023, {8, QuantGranularity::kPerTensor, 0}},
      {257, 4096, {4, QuantGranularity::kPerTensor, 0}},
  };
  for (const Case& c : cases) CheckFakeQuantExact<T>(c.rows, c.cols, c.config, layout);
}
#endif

TEST(CudaKernelsTest, FakeQuantizeAllPaths_CUDA) {
  if (!CudaKernelsAvailable()) GTEST_SKIP() << "no CUDA device";
#ifdef QUANTD_WITH_CUDA
  for (const Layout layout :
       {Layout{false, 0}, Layout{true, 0}, Layout{false, 1}, Layout{true, 1}}) {
    CheckFakeQuantAll<float>(layout);
    CheckFakeQuantAll<__half>(layout);
    CheckFakeQuantAll<__nv_bfloat16>(layout);
  }
#endif
}

}  // namespace
}  // namespace quantd::kernels
