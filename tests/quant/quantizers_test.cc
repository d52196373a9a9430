#include "worker/quant/quantizers.h"

#include "gtest/gtest.h"
#include "kernels/fake_quant.h"

namespace quantd::quant {
namespace {

TEST(QuantizeWeightTest, SixteenBitsIsIdentity) {
  auto w = torch::randn({8, 16});
  auto q = QuantizeWeight(w, {16, -1, false});
  ASSERT_TRUE(q.ok());
  EXPECT_TRUE(torch::equal(*q, w));
}

// Round-trip error within theory: |ŵ - w| <= s/2 with s = max|row or group| / QuantMax.
TEST(QuantizeWeightTest, ErrorWithinHalfAStep) {
  torch::manual_seed(0);
  auto w = torch::randn({32, 64});
  for (int bits : {2, 3, 4, 8}) {
    for (int64_t group : {-1, 16}) {
      auto q = QuantizeWeight(w, {bits, group, false});
      ASSERT_TRUE(q.ok()) << q.status();
      auto seg = group > 0 ? w.view({32, 64 / group, group}) : w.view({32, 1, 64});
      auto qs = group > 0 ? q->view({32, 64 / group, group}) : q->view({32, 1, 64});
      auto step = seg.abs().amax(-1, true) / static_cast<float>(kernels::QuantMax(bits));
      EXPECT_TRUE(((qs - seg).abs() <= step / 2 + 1e-6).all().item<bool>()) << bits;
      // The grid really is coarse: values land on multiples of the step.
      auto k = qs / step;
      EXPECT_LT((k - k.round()).abs().max().item<float>(), 1e-3f);
      EXPECT_GT((qs - seg).abs().max().item<float>(), 0.0f);
    }
  }
}

TEST(QuantizeWeightTest, MseInitIsNoWorseThanMinMax) {
  torch::manual_seed(1);
  auto w = torch::randn({16, 128});
  w.index_put_({0, 0}, 25.0f);  // one outlier makes min-max wasteful
  auto plain = QuantizeWeight(w, {4, -1, false});
  auto mse = QuantizeWeight(w, {4, -1, true});
  ASSERT_TRUE(plain.ok() && mse.ok());
  EXPECT_LE((*mse - w).pow(2).sum().item<float>(), (*plain - w).pow(2).sum().item<float>());
}

TEST(QuantizeWeightTest, RejectsGroupNotDividing) {
  EXPECT_FALSE(QuantizeWeight(torch::randn({4, 10}), {4, 4, false}).ok());
}

TEST(ActQuantizerTest, StaticPerTensorCalibratesMax) {
  ActQuantizer q(8, /*dynamic=*/false, 0);
  EXPECT_TRUE(q.is_static());
  EXPECT_FALSE(q.Finalize().ok());
  q.Observe(torch::tensor({0.5f, -2.0f}));
  q.Observe(torch::tensor({1.0f, 1.5f}));
  ASSERT_TRUE(q.Finalize().ok());
  EXPECT_NEAR(q.scales().item<float>(), 2.0f / 127, 1e-7);
  auto x = torch::linspace(-2, 2, 101);
  auto y = q.Apply(x);
  EXPECT_TRUE(((y - x).abs() <= 1.0f / 127 + 1e-6).all().item<bool>());
  // Beyond the calibrated range values clip.
  EXPECT_NEAR(q.Apply(torch::tensor({10.0f})).item<float>(), 2.0f, 1e-5);
}

TEST(ActQuantizerTest, StaticKvScalesPerHeadGroup) {
  ActQuantizer q(4, false, 2);
  auto x = torch::zeros({1, 2, 3, 4});
  x.index_put_({0, 1, 2, 3}, 7.0f);
  x.index_put_({0, 0, 0, 0}, -1.4f);
  q.Observe(x);
  ASSERT_TRUE(q.Finalize().ok());
  ASSERT_EQ(q.scales().sizes(), (std::vector<int64_t>{1, 2, 1, 2}));
  EXPECT_NEAR(q.scales()[0][1][0][1].item<float>(), 1.0f, 1e-6);  // 7 / 7
  EXPECT_NEAR(q.scales()[0][0][0][0].item<float>(), 0.2f, 1e-6);  // 1.4 / 7
  EXPECT_EQ(q.scales()[0][0][0][1].item<float>(), 1.0f);          // all-zero group
  auto y = q.Apply(x);
  EXPECT_TRUE(torch::allclose(y, x, 1e-5, 1e-5));
}

TEST(ActQuantizerTest, DynamicPerTokenErrorWithinHalfAStep) {
  torch::manual_seed(2);
  auto x = torch::randn({5, 32}) * torch::arange(1, 6).unsqueeze(1);
  ActQuantizer q(4, true, 0);
  auto y = q.Apply(x);
  auto step = x.abs().amax(-1, true) / 7.0f;
  EXPECT_TRUE(((y - x).abs() <= step / 2 + 1e-6).all().item<bool>());
  q.set_active(false);
  EXPECT_TRUE(torch::equal(q.Apply(x), x));
}

TEST(ActQuantizerTest, SixteenBitsPassesThrough) {
  ActQuantizer q(16, false, 0);
  EXPECT_FALSE(q.enabled());
  EXPECT_FALSE(q.is_static());
  auto x = torch::randn({3, 3});
  EXPECT_TRUE(torch::equal(q.Apply(x), x));
}

}  // namespace
}  // namespace quantd::quant
