#include <torch/torch.h>

#include <vector>

#include "gtest/gtest.h"
#include "kernels/device.h"
#include "kernels/fake_quant_torch.h"
#include "kernels/fwht.h"
#include "kernels/hadamard_torch.h"

namespace quantd::kernels {
namespace {

struct Tolerance {
  double rtol;
  double atol;
};

// Tied to the dtype's unit roundoff (fp32 2^-24, fp16 2^-11, bf16 2^-8) with room for the sum.
Tolerance ToleranceFor(torch::ScalarType type) {
  if (type == torch::kBFloat16) return {2e-2, 2e-2};
  if (type == torch::kHalf) return {3e-3, 3e-3};
  return {1e-5, 1e-4};
}

TEST(HadamardTorchTest, MatchesDenseMatmulForEachDtype) {
  torch::manual_seed(0);
  for (int64_t n : {8, 64, 172, 1376, 2560, 4096}) {
    const HadamardFactors f = FactorHadamard(n);
    for (bool transpose : {false, true}) {
      const torch::Tensor m = HadamardMatrix(f, /*orthonormal=*/true);
      const torch::Tensor dense = transpose ? m : m.t();
      for (auto type : {torch::kFloat, torch::kBFloat16, torch::kHalf}) {
        const torch::Tensor x = torch::randn({2, 3, n}).to(type);
        auto y = HadamardTransform(x, f, /*orthonormal=*/true, transpose);
        ASSERT_TRUE(y.ok()) << y.status();
        EXPECT_EQ(y->scalar_type(), type);
        EXPECT_EQ(y->sizes(), x.sizes());
        const torch::Tensor want = torch::matmul(x.to(torch::kDouble), dense.to(torch::kDouble));
        const Tolerance tol = ToleranceFor(type);
        EXPECT_TRUE(torch::allclose(y->to(torch::kDouble), want, tol.rtol, tol.atol))
            << n << " " << type << " max err "
            << (y->to(torch::kDouble) - want).abs().max().item<double>();
      }
    }
  }
}

TEST(HadamardTorchTest, TorchOpsPathAgreesWithKernelPath) {
  torch::manual_seed(1);
  for (int64_t n : {2, 172, 4096, 5120, 11008, 32768}) {  // 1, 2 and 3 Kronecker factors
    const HadamardFactors f = FactorHadamard(n);
    const torch::Tensor x = torch::randn({4, n});
    for (bool orthonormal : {false, true}) {
      auto a = HadamardTransform(x, f, orthonormal, true);
      auto b = HadamardTransformTorchOps(x, f, orthonormal, true);
      ASSERT_TRUE(a.ok() && b.ok());
      const double scale = orthonormal ? 1.0 : std::sqrt(static_cast<double>(n));
      EXPECT_TRUE(torch::allclose(*a, *b, 1e-5, 1e-4 * scale)) << n;
    }
  }
}

TEST(HadamardTorchTest, GradientIsTheTransposedTransform) {
  torch::manual_seed(2);
  const HadamardFactors f = FactorHadamard(344);  // Paley I, not symmetric
  const torch::Tensor m = HadamardMatrix(f, true);
  for (bool transpose : {false, true}) {
    for (bool torch_ops : {false, true}) {
      const torch::Tensor x = torch::randn({3, 344}).requires_grad_(true);
      const torch::Tensor w = torch::randn({3, 344});
      auto y = torch_ops ? HadamardTransformTorchOps(x, f, true, transpose)
                         : HadamardTransform(x, f, true, transpose);
      ASSERT_TRUE(y.ok());
      (*y * w).sum().backward();
      // y = x·Mᵀ (or x·M)  =>  dL/dx = w·M (or w·Mᵀ).
      const torch::Tensor want = torch::matmul(w, transpose ? m.t() : m);
      EXPECT_TRUE(torch::allclose(x.grad(), want, 1e-5, 1e-5)) << transpose << torch_ops;
    }
  }
}

// The online rotation both training and inference call: the transform of HadamardTransform
// (dense for 172 and 344, the fused kernel for 64 and 5120, the split path for bf16 11008 on the
// CPU), differentiable, with its matrix made once and remade for another device.
TEST(HadamardTorchTest, OnlineHadamardIsTheTransformAndKeepsItsMatrix) {
  torch::manual_seed(4);
  for (int64_t n : {64, 172, 344, 5120}) {
    const HadamardFactors f = FactorHadamard(n);
    const torch::Tensor x = torch::randn({2, 5, n}).requires_grad_(true);
    torch::Tensor cache;
    auto y = OnlineHadamard(x, f, &cache);
    ASSERT_TRUE(y.ok()) << y.status();
    auto want = HadamardTransform(x.detach(), f, /*orthonormal=*/true);
    ASSERT_TRUE(want.ok());
    EXPECT_TRUE(torch::allclose(*y, *want, 1e-5, 1e-5)) << n;
    const bool dense = f.base_order > 1 && n <= 2048;
    EXPECT_EQ(cache.defined(), dense) << n;
    y->sum().backward();
    // y = x·Mᵀ/sqrt(n)  =>  d(sum y)/dx = 1·M/sqrt(n), the same for every row.
    const torch::Tensor grad_want = torch::matmul(torch::ones({1, n}), HadamardMatrix(f, true));
    // (Column sums of up to 5120 terms of ±1/sqrt(n): fp32 sums agree to about 1e-4.)
    EXPECT_TRUE(torch::allclose(x.grad().reshape({-1, n}), grad_want.expand({10, n}), 1e-4, 1e-3))
        << n;
    if (dense) {
      const void* made = cache.data_ptr();
      ASSERT_TRUE(OnlineHadamard(x.detach(), f, &cache).ok());
      EXPECT_EQ(cache.data_ptr(), made) << "the matrix is made once";
    }
  }
  // bf16 rows with a large base take the split path on the CPU: its base is what is kept.
  const HadamardFactors f = FactorHadamard(11008);  // H_172 ⊗ H_64
  const torch::Tensor x = torch::randn({3, 11008}).to(torch::kBFloat16);
  torch::Tensor cache;
  auto y = OnlineHadamard(x, f, &cache);
  ASSERT_TRUE(y.ok()) << y.status();
  ASSERT_TRUE(cache.defined());
  EXPECT_EQ(cache.sizes(), (std::vector<int64_t>{172, 172}));
  const torch::Tensor want =
      torch::matmul(x.to(torch::kDouble), HadamardMatrix(f, true).t().to(torch::kDouble));
  EXPECT_TRUE(torch::allclose(y->to(torch::kDouble), want, 4e-2, 4e-2));
  EXPECT_FALSE(OnlineHadamard(torch::randn({2, 171}), FactorHadamard(172), &cache).ok());
}

// The two-pass form GPUs use for the large online rotations (FWHT of the chunks, then the base
// as a matmul): the same transform, rounded twice for 16-bit inputs, differentiable, with its
// base converted once.
TEST(HadamardTorchTest, SplitPathIsTheTransformRoundedTwice) {
  torch::manual_seed(8);
  for (int64_t n : {344, 5120, 11008, 13824}) {  // k = 344 (p = 1), 20, 172, 108
    const HadamardFactors f = FactorHadamard(n);
    ASSERT_GT(f.base_order, 1) << n;
    const torch::Tensor dense = HadamardMatrix(f, /*orthonormal=*/true).t().to(torch::kDouble);
    // (LibTorch 1.13 has no fp16 matmul on the CPU; the CUDA test below covers fp16.)
    for (auto type : {torch::kFloat, torch::kBFloat16}) {
      const torch::Tensor x = torch::randn({2, 3, n}).to(type);
      torch::Tensor cache;
      auto y = HadamardTransformSplit(x, f, &cache);
      ASSERT_TRUE(y.ok()) << y.status();
      EXPECT_EQ(y->scalar_type(), type);
      EXPECT_EQ(y->sizes(), x.sizes());
      const torch::Tensor want = torch::matmul(x.to(torch::kDouble), dense);
      const Tolerance tol = ToleranceFor(type);
      const double rounds = type == torch::kFloat ? 1 : 2;
      EXPECT_TRUE(
          torch::allclose(y->to(torch::kDouble), want, rounds * tol.rtol, rounds * tol.atol))
          << n << " " << type << " max err "
          << (y->to(torch::kDouble) - want).abs().max().item<double>();
      ASSERT_TRUE(cache.defined());
      EXPECT_EQ(cache.sizes(), (std::vector<int64_t>{f.base_order, f.base_order}));
      const void* made = cache.data_ptr();
      ASSERT_TRUE(HadamardTransformSplit(x, f, &cache).ok());
      EXPECT_EQ(cache.data_ptr(), made) << "the base is converted once";
    }
    // y = x·Mᵀ/sqrt(n)  =>  d(sum y·w)/dx = w·M/sqrt(n).
    const torch::Tensor x = torch::randn({3, n}).requires_grad_(true);
    const torch::Tensor w = torch::randn({3, n});
    torch::Tensor cache;
    (HadamardTransformSplit(x, f, &cache).value() * w).sum().backward();
    const torch::Tensor grad_want = torch::matmul(w.to(torch::kDouble), dense.t());
    EXPECT_TRUE(torch::allclose(x.grad().to(torch::kDouble), grad_want, 1e-5, 1e-4)) << n;
  }
  torch::Tensor cache;
  EXPECT_FALSE(HadamardTransformSplit(torch::randn({2, 5119}), FactorHadamard(5120), &cache).ok());
  EXPECT_FALSE(HadamardTransformSplit(torch::randn({2, 5120}).to(torch::kInt32),
                                      FactorHadamard(5120), &cache)
                   .ok());
}

TEST(HadamardTorchTest, ParallelRowsMatchTheSerialKernel) {
  at::set_num_threads(2);
  torch::manual_seed(5);
  for (int64_t n : {64, 172, 5120}) {
    const HadamardFactors f = FactorHadamard(n);
    const torch::Tensor x = torch::randn({301, n});
    auto y = HadamardTransform(x, f, /*orthonormal=*/true);
    ASSERT_TRUE(y.ok());
    torch::Tensor want = x.clone();
    HadamardTransformRows(f, want.data_ptr<float>(), 301, /*orthonormal=*/true);
    EXPECT_TRUE(torch::equal(*y, want)) << n;
    // A non-contiguous view gives the same result.
    auto from_view = HadamardTransform(x.t().contiguous().t(), f, /*orthonormal=*/true);
    ASSERT_TRUE(from_view.ok());
    EXPECT_TRUE(torch::equal(*from_view, want)) << n;
  }
}

TEST(HadamardTorchTest, RejectsBadInputs) {
  const HadamardFactors f = FactorHadamard(64);
  EXPECT_EQ(HadamardTransform(torch::zeros({2, 32}), f, true).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(HadamardTransform(torch::zeros({2, 64}, torch::kInt), f, true).status().code(),
            absl::StatusCode::kInvalidArgument);
}

const std::vector<FakeQuantConfig>& Layouts() {
  static const std::vector<FakeQuantConfig> layouts = {{4, QuantGranularity::kPerTensor, 0},
                                                       {8, QuantGranularity::kPerToken, 0},
                                                       {4, QuantGranularity::kPerGroup, 16},
                                                       {3, QuantGranularity::kPerGroup, 64}};
  return layouts;
}

TEST(FakeQuantTorchTest, KernelPathMatchesTheTorchFormula) {
  torch::manual_seed(3);
  for (const FakeQuantConfig& config : Layouts()) {
    for (auto type : {torch::kFloat, torch::kBFloat16}) {
      const torch::Tensor x = torch::randn({2, 5, 128}).to(type);
      auto fast = FakeQuantizeDynamic(x, config, 0.9f);
      auto ste = FakeQuantizeDynamicSte(x, config, torch::tensor(0.9f));
      ASSERT_TRUE(fast.ok() && ste.ok()) << fast.status() << ste.status();
      EXPECT_EQ(fast->values.scalar_type(), type);
      EXPECT_EQ(fast->scales.sizes(), ste->scales.sizes());
      EXPECT_TRUE(torch::allclose(fast->scales, ste->scales, 1e-6, 0));
      EXPECT_TRUE(torch::allclose(fast->values.to(torch::kFloat), ste->values.to(torch::kFloat),
                                  1e-5, 1e-6));
      // Static with the dynamic scales reproduces the dynamic result.
      auto fixed = FakeQuantizeStatic(x, config, fast->scales);
      ASSERT_TRUE(fixed.ok()) << fixed.status();
      EXPECT_TRUE(torch::equal(*fixed, fast->values));
    }
  }
}

TEST(FakeQuantTorchTest, ScaleShapesFollowTheLayout) {
  const torch::Tensor x = torch::randn({2, 3, 64});
  auto per_tensor = FakeQuantizeDynamic(x, {8, QuantGranularity::kPerTensor, 0});
  auto per_token = FakeQuantizeDynamic(x, {8, QuantGranularity::kPerToken, 0});
  auto per_group = FakeQuantizeDynamic(x, {8, QuantGranularity::kPerGroup, 16});
  ASSERT_TRUE(per_tensor.ok() && per_token.ok() && per_group.ok());
  EXPECT_EQ(per_tensor->scales.dim(), 0);
  EXPECT_EQ(per_token->scales.sizes(), torch::IntArrayRef({2, 3, 1}));
  EXPECT_EQ(per_group->scales.sizes(), torch::IntArrayRef({2, 3, 4}));
  EXPECT_NEAR(per_token->scales[1][2][0].item<float>(), x[1][2].abs().max().item<float>() / 127.0f,
              1e-7);
  EXPECT_EQ(FakeQuantizeDynamic(x, {8, QuantGranularity::kPerGroup, 48}).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(
      FakeQuantizeStatic(x, {8, QuantGranularity::kPerToken, 0}, torch::ones({5})).status().code(),
      absl::StatusCode::kInvalidArgument);
}

TEST(FakeQuantTorchTest, SteGradientsReachInputsAndScales) {
  const FakeQuantConfig config{4, QuantGranularity::kPerToken, 0};
  // Row 0 inside the range except the last value; row 1 clamped both ends.
  const torch::Tensor x =
      torch::tensor({0.26f, -0.74f, 1.1f, 9.0f, -5.0f, 0.1f, 0.2f, 4.0f}).reshape({2, 4});
  x.requires_grad_(true);
  const torch::Tensor s = torch::tensor({0.25f, 0.5f}).reshape({2, 1}).requires_grad_(true);
  auto y = FakeQuantizeSte(x, config, s);
  ASSERT_TRUE(y.ok());
  y->sum().backward();
  // d/dx: 1 where -8 <= x/s <= 7, else 0.
  const torch::Tensor want_dx =
      torch::tensor({1.f, 1.f, 1.f, 0.f, 0.f, 1.f, 1.f, 0.f}).reshape({2, 4});
  EXPECT_TRUE(torch::equal(x.grad(), want_dx));
  // d/ds: round(v) - v inside, the clamp bound outside.
  const float v00 = 0.26f / 0.25f, v01 = -0.74f / 0.25f, v02 = 1.1f / 0.25f;
  const float want_s0 = (std::nearbyint(v00) - v00) + (std::nearbyint(v01) - v01) +
                        (std::nearbyint(v02) - v02) + 7.0f;
  const float v15 = 0.1f / 0.5f, v16 = 0.2f / 0.5f;
  const float want_s1 = -8.0f + (std::nearbyint(v15) - v15) + (std::nearbyint(v16) - v16) + 7.0f;
  EXPECT_NEAR(s.grad()[0][0].item<float>(), want_s0, 1e-5);
  EXPECT_NEAR(s.grad()[1][0].item<float>(), want_s1, 1e-5);
}

TEST(FakeQuantTorchTest, IntegerValuesTimesScalesGiveTheFakeQuantizedTensor) {
  torch::manual_seed(8);
  const torch::Tensor w = torch::randn({8, 256});
  for (const FakeQuantConfig& config : Layouts()) {
    auto fq = FakeQuantizeDynamic(w, config);
    ASSERT_TRUE(fq.ok());
    auto q = QuantizeInt8(w, config, fq->scales);
    ASSERT_TRUE(q.ok()) << q.status();
    EXPECT_EQ(q->scalar_type(), torch::kChar);
    EXPECT_LE(q->max().item<int>(), QuantMax(config.bits));
    EXPECT_GE(q->min().item<int>(), QuantMin(config.bits));
    // Dequantize with the layout's broadcast shape.
    torch::Tensor deq;
    if (config.granularity == QuantGranularity::kPerGroup) {
      deq = (q->to(torch::kFloat).reshape({8, -1, config.group_size}) * fq->scales.unsqueeze(-1))
                .reshape({8, 256});
    } else {
      deq = q->to(torch::kFloat) * fq->scales;
    }
    EXPECT_TRUE(torch::equal(deq, fq->values));
  }
  EXPECT_EQ(
      QuantizeInt8(w, {16, QuantGranularity::kPerToken, 0}, torch::ones({8, 1})).status().code(),
      absl::StatusCode::kInvalidArgument);
}

TEST(FakeQuantTorchTest, MseSearchMatchesTheKernel) {
  torch::manual_seed(4);
  const torch::Tensor w = torch::randn({16, 256}) * 0.02;
  const FakeQuantConfig config{4, QuantGranularity::kPerGroup, 128};
  auto scales = MseSearchScales(w, config);
  ASSERT_TRUE(scales.ok());
  EXPECT_EQ(scales->sizes(), torch::IntArrayRef({16, 2}));
  std::vector<float> want(32);
  const torch::Tensor wc = w.contiguous();
  MseSearchScales(wc.data_ptr<float>(), 16, 256, config, ShrinkSearch{}, want.data());
  for (int64_t i = 0; i < 32; ++i) EXPECT_EQ(scales->reshape({-1})[i].item<float>(), want[i]);
}

// Σ (fake_quant(x, s) − x)² per segment for the given scales (layout shape).
torch::Tensor SegmentErrors(const torch::Tensor& x, const FakeQuantConfig& config,
                            const torch::Tensor& scales) {
  auto q = FakeQuantizeStatic(x, config, scales);
  EXPECT_TRUE(q.ok());
  const int64_t length = config.granularity == QuantGranularity::kPerGroup   ? config.group_size
                         : config.granularity == QuantGranularity::kPerToken ? x.size(-1)
                                                                             : x.numel();
  return (*q - x).square().reshape({-1, length}).sum(1);
}

// The torch-ops search (what a GPU runs) against the CPU kernel, on CPU tensors: the same
// scale for almost every segment, and where one differs, an error as small to 1e-5.
TEST(FakeQuantTorchTest, MseSearchTorchOpsFindsTheKernelsMinimum) {
  torch::manual_seed(9);
  // Heavy tails (a few large weights per row), as in real layers, and an all-zero row.
  torch::Tensor w = torch::randn({64, 512}) * 0.02;
  w.index_put_({torch::indexing::Slice(), torch::indexing::Slice(0, 512, 97)}, 0.3);
  w[5].zero_();
  for (const FakeQuantConfig& config : {FakeQuantConfig{4, QuantGranularity::kPerGroup, 128},
                                        FakeQuantConfig{3, QuantGranularity::kPerToken, 0},
                                        FakeQuantConfig{8, QuantGranularity::kPerTensor, 0}}) {
    auto kernel = MseSearchScales(w, config);
    auto ops = MseSearchScalesTorchOps(w, config);
    ASSERT_TRUE(kernel.ok() && ops.ok()) << kernel.status() << ops.status();
    ASSERT_EQ(ops->sizes(), kernel->sizes());
    const double same = torch::eq(*ops, *kernel).to(torch::kDouble).mean().item<double>();
    EXPECT_GE(same, 0.97) << config.bits;
    RecordProperty("same_scale_fraction_w" + std::to_string(config.bits), std::to_string(same));
    EXPECT_TRUE(
        torch::allclose(SegmentErrors(w, config, *ops), SegmentErrors(w, config, *kernel), 1e-5, 0))
        << config.bits;
  }
  // Rows in several chunks (here of 3 rows) give what one pass gives.
  const FakeQuantConfig per_token{4, QuantGranularity::kPerToken, 0};
  auto one_pass = MseSearchScalesTorchOps(w, per_token);
  auto chunked = MseSearchScalesTorchOps(w, per_token, ShrinkSearch{}, 3 * 512);
  ASSERT_TRUE(one_pass.ok() && chunked.ok());
  EXPECT_TRUE(torch::equal(*chunked, *one_pass));
}

// LibTorch with CUDA and this build's CUDA kernels, both needed for the *_CUDA tests below.
bool TorchAndKernelsOnCuda() { return torch::cuda::is_available() && CudaKernelsAvailable(); }

TEST(HadamardTorchTest, CudaTensorsMatchTheCpu_CUDA) {
  if (!TorchAndKernelsOnCuda()) GTEST_SKIP() << "no CUDA device for LibTorch and the kernels";
  torch::manual_seed(6);
  for (int64_t n : {172, 4096, 11008, 28672}) {
    const HadamardFactors f = FactorHadamard(n);
    for (auto type : {torch::kFloat, torch::kBFloat16, torch::kHalf}) {
      const torch::Tensor x = torch::randn({3, 5, n}).to(type);
      auto cpu = HadamardTransform(x, f, true, /*transpose=*/true);
      auto gpu = HadamardTransform(x.to(torch::kCUDA), f, true, /*transpose=*/true);
      ASSERT_TRUE(cpu.ok() && gpu.ok()) << cpu.status() << gpu.status();
      ASSERT_TRUE(gpu->is_cuda());
      // Both round their own fp32 result once: two roundings apart at most.
      const Tolerance tol = ToleranceFor(type);
      EXPECT_TRUE(torch::allclose(gpu->cpu().to(torch::kDouble), cpu->to(torch::kDouble),
                                  2 * tol.rtol, 2 * tol.atol))
          << n << " " << type;
    }
    // Gradients through the CUDA kernel.
    const torch::Tensor w = torch::randn({2, n});
    const torch::Tensor x_cpu = torch::randn({2, n}).requires_grad_(true);
    const torch::Tensor x_gpu = x_cpu.detach().to(torch::kCUDA).requires_grad_(true);
    (HadamardTransform(x_cpu, f, true).value() * w).sum().backward();
    (HadamardTransform(x_gpu, f, true).value() * w.to(torch::kCUDA)).sum().backward();
    EXPECT_TRUE(torch::allclose(x_gpu.grad().cpu(), x_cpu.grad(), 1e-5, 1e-4)) << n;
  }
}

// The online rotations of Llama-sized layers on a GPU: the split path for bases of order ≥ 64,
// the fused kernel otherwise; both the transform, and the split one differentiable on the device.
TEST(HadamardTorchTest, OnlineHadamardOnCudaPicksItsPathAndIsTheTransform_CUDA) {
  if (!TorchAndKernelsOnCuda()) GTEST_SKIP() << "no CUDA device for LibTorch and the kernels";
  torch::manual_seed(9);
  for (int64_t n : {5120, 11008, 14336}) {  // k = 20, 172, 28
    const HadamardFactors f = FactorHadamard(n);
    const torch::Tensor dense = HadamardMatrix(f, /*orthonormal=*/true).t().to(torch::kDouble);
    for (auto type : {torch::kFloat, torch::kBFloat16, torch::kHalf}) {
      const torch::Tensor x = torch::randn({4, 7, n}).to(type);
      torch::Tensor cache;
      auto y = OnlineHadamard(x.to(torch::kCUDA), f, &cache);
      ASSERT_TRUE(y.ok()) << y.status();
      ASSERT_TRUE(y->is_cuda());
      const bool split = f.base_order >= 64;
      EXPECT_EQ(cache.defined(), split) << n << " " << type;
      const torch::Tensor want = torch::matmul(x.to(torch::kDouble), dense);
      const Tolerance tol = ToleranceFor(type);
      const double rounds = type == torch::kFloat ? 1 : 2;
      const torch::Tensor got = y->cpu().to(torch::kDouble);
      EXPECT_TRUE(torch::allclose(got, want, rounds * tol.rtol, rounds * tol.atol))
          << n << " " << type << " max err " << (got - want).abs().max().item<double>();
    }
    const torch::Tensor w = torch::randn({2, n});
    const torch::Tensor x = torch::randn({2, n}).to(torch::kCUDA).requires_grad_(true);
    torch::Tensor cache;
    (HadamardTransformSplit(x, f, &cache).value() * w.to(torch::kCUDA)).sum().backward();
    const torch::Tensor grad_want = torch::matmul(w.to(torch::kDouble), dense.t());
    EXPECT_TRUE(torch::allclose(x.grad().cpu().to(torch::kDouble), grad_want, 1e-5, 1e-4)) << n;
  }
}

TEST(HadamardTorchTest, NonDefaultStreamTakesTheTorchOpsPath_CUDA) {
  if (!TorchAndKernelsOnCuda()) GTEST_SKIP() << "no CUDA device for LibTorch and the kernels";
  const HadamardFactors f = FactorHadamard(5120);
  const torch::Tensor x = torch::randn({4, 5120});
  const c10::Device device(torch::kCUDA, 0);
  const c10::Stream side =
      c10::impl::getDeviceGuardImpl(c10::DeviceType::CUDA)->getStreamFromGlobalPool(device);
  torch::Tensor got;
  {
    c10::StreamGuard guard(side);
    got = HadamardTransform(x.to(device), f, true).value().cpu();
  }
  EXPECT_TRUE(torch::allclose(got, HadamardTransform(x, f, true).value(), 1e-5, 1e-4));
}

TEST(FakeQuantTorchTest, CudaTensorsMatchTheCpu_CUDA) {
  if (!TorchAndKernelsOnCuda()) GTEST_SKIP() << "no CUDA device for LibTorch and the kernels";
  torch::manual_seed(7);
  for (const FakeQuantConfig& config : Layouts()) {
    const torch::Tensor x = torch::randn({4, 7, 256});
    auto cpu = FakeQuantizeDynamic(x, config, 0.95f);
    auto gpu = FakeQuantizeDynamic(x.to(torch::kCUDA), config, 0.95f);
    ASSERT_TRUE(cpu.ok() && gpu.ok()) << cpu.status() << gpu.status();
    ASSERT_TRUE(gpu->values.is_cuda());
    // Same fp32 operations in the same order: equal results.
    EXPECT_TRUE(torch::equal(gpu->scales.cpu(), cpu->scales));
    EXPECT_TRUE(torch::equal(gpu->values.cpu(), cpu->values));
    auto fixed = FakeQuantizeStatic(x.to(torch::kCUDA), config, gpu->scales);
    ASSERT_TRUE(fixed.ok()) << fixed.status();
    EXPECT_TRUE(torch::equal(fixed->cpu(), cpu->values));
  }
}

// mse_init on a CUDA tensor searches on the GPU (torch ops) and finds the CPU kernel's scales.
TEST(FakeQuantTorchTest, MseSearchOnCudaFindsTheCpuMinimum_CUDA) {
  if (!torch::cuda::is_available()) GTEST_SKIP() << "no CUDA device";
  torch::manual_seed(10);
  const torch::Tensor w = torch::randn({256, 1024}) * 0.02;
  const FakeQuantConfig config{4, QuantGranularity::kPerGroup, 128};
  auto cpu = MseSearchScales(w, config);
  auto gpu = MseSearchScales(w.to(torch::kCUDA), config);
  ASSERT_TRUE(cpu.ok() && gpu.ok()) << cpu.status() << gpu.status();
  ASSERT_TRUE(gpu->is_cuda());
  const torch::Tensor on_host = gpu->cpu();
  EXPECT_GE(torch::eq(on_host, *cpu).to(torch::kDouble).mean().item<double>(), 0.97);
  EXPECT_TRUE(
      torch::allclose(SegmentErrors(w, config, on_host), SegmentErrors(w, config, *cpu), 1e-5, 0));
}

}  // namespace
}  // namespace quantd::kernels
