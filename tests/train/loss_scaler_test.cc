// Loss scaling keeps float16 gradients that would flush to zero, skips steps whose scaled
// gradients overflow, and leaves other dtypes alone.
#include "worker/train/loss_scaler.h"

#include <limits>

#include "gtest/gtest.h"

namespace quantd::train {
namespace {

// A gradient of 2e-8 per element reaching an fp32 parameter through float16 activations (the
// size of an MSE gradient over a Llama-2-7B block's output).
torch::Tensor TinyGradient(LossScaler& scaler, bool* stepped) {
  torch::Tensor param = torch::ones({1000}, torch::kFloat32).requires_grad_(true);
  const torch::Tensor activations = param.to(torch::kHalf);
  const torch::Tensor loss = activations.to(torch::kFloat32).pow(2).mean() * 1e-5;
  scaler.Scale(loss).backward();
  *stepped = scaler.Unscale({param});
  return param.grad();
}

TEST(LossScalerTest, KeepsFloat16GradientsThatWouldUnderflow) {
  bool stepped = false;
  LossScaler off(false);
  EXPECT_EQ(TinyGradient(off, &stepped).abs().max().item<double>(), 0.0);  // flushed
  EXPECT_TRUE(stepped);

  LossScaler on = LossScaler::For(torch::kHalf);
  ASSERT_TRUE(on.active());
  const torch::Tensor grad = TinyGradient(on, &stepped);
  EXPECT_TRUE(stepped);
  EXPECT_NEAR(grad.min().item<double>(), 2e-8, 2e-8 * 1e-3);
  EXPECT_NEAR(grad.max().item<double>(), 2e-8, 2e-8 * 1e-3);
}

TEST(LossScalerTest, OverflowSkipsTheStepAndHalvesTheScaleThenItGrowsBack) {
  LossScaler scaler(true, 65536.0, /*growth_interval=*/2);
  torch::Tensor param = torch::ones({4}, torch::kFloat32).requires_grad_(true);
  // 1e3 · 65536 overflows float16 (max 65504) on the way back.
  (param.to(torch::kHalf) * 1000).to(torch::kFloat32).sum().mul(scaler.scale()).backward();
  EXPECT_FALSE(scaler.Unscale({param}));
  EXPECT_EQ(scaler.scale(), 32768.0);
  EXPECT_EQ(scaler.skipped_steps(), 1);
  EXPECT_EQ(param.grad().abs().max().item<double>(), 0.0);  // nothing left for a step

  for (int i = 0; i < 2; ++i) {
    param.mutable_grad().zero_();
    scaler.Scale(param.sum()).backward();
    EXPECT_TRUE(scaler.Unscale({param}));
    EXPECT_TRUE(torch::allclose(param.grad(), torch::ones({4})));
  }
  EXPECT_EQ(scaler.scale(), 65536.0);  // two good steps: doubled
}

TEST(LossScalerTest, OtherDtypesAreLeftAlone) {
  for (auto dtype : {torch::kFloat32, torch::kBFloat16}) {
    LossScaler scaler = LossScaler::For(dtype);
    EXPECT_FALSE(scaler.active());
    EXPECT_EQ(scaler.scale(), 1.0);
    torch::Tensor param = torch::ones({2}).requires_grad_(true);
    (param * std::numeric_limits<float>::infinity()).sum().backward();
    EXPECT_TRUE(scaler.Unscale({param}));  // not its business: the caller's checks see it
  }
}

}  // namespace
}  // namespace quantd::train
