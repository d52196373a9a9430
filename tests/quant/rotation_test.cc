#include "worker/quant/rotation.h"

#include "gtest/gtest.h"
#include "tests/quant/quant_fixture.h"
#include "worker/quant/quant_linear.h"

namespace quantd::quant {
namespace {

using testing::LoadModel;
using testing::Logits;
using testing::StoryTokens;

TEST(ResidualRotationTest, IsOrthogonalInBothModes) {
  for (auto mode : {RotationOptions::Mode::kHadamard, RotationOptions::Mode::kRandom}) {
    for (int64_t d : {64, 172, mode == RotationOptions::Mode::kHadamard ? 4096 : 256}) {
      RotationOptions options;
      options.mode = mode;
      options.seed = 7;
      auto r = ResidualRotation(d, options);
      auto err = (torch::matmul(r, r.t()) - torch::eye(d, torch::kFloat64)).abs().max();
      EXPECT_LT(err.item<double>(), 1e-10) << d;
    }
  }
}

TEST(ResidualRotationTest, SeedChangesSigns) {
  RotationOptions a, b;
  a.seed = 1;
  b.seed = 2;
  EXPECT_FALSE(torch::allclose(ResidualRotation(64, a), ResidualRotation(64, b)));
  EXPECT_TRUE(torch::equal(ResidualRotation(64, a), ResidualRotation(64, a)));
}

class RotationInvarianceTest : public ::testing::TestWithParam<std::tuple<bool, bool, bool>> {};

TEST_P(RotationInvarianceTest, LogitsUnchanged) {
  const auto [random, down_had, qk_had] = GetParam();
  auto original = LoadModel();
  auto rotated = LoadModel();
  ASSERT_TRUE(original && rotated);
  RotationOptions options;
  options.mode = random ? RotationOptions::Mode::kRandom : RotationOptions::Mode::kHadamard;
  options.seed = 3;
  options.down_online_had = down_had;
  options.qk_online_had = qk_had;
  ASSERT_TRUE(RotateModel(*rotated, options).ok());
  EXPECT_EQ(dynamic_cast<QuantLinear*>(rotated->blocks[0].down_proj.get()) != nullptr, down_had);
  EXPECT_EQ(rotated->blocks[0].attention_transform != nullptr, qk_had);
  auto tokens = StoryTokens(4000);
  tokens.resize(200);
  auto expected = Logits(*original, tokens);
  auto actual = Logits(*rotated, tokens);
  // Logits of this model span about ±20; fp32 rounding through 5 layers stays far below 1e-3.
  EXPECT_LT((expected - actual).abs().max().item<float>(), 2e-3f);
  EXPECT_TRUE(torch::equal(expected.argmax(-1), actual.argmax(-1)));
  // The weights really changed.
  EXPECT_FALSE(torch::allclose(original->embed_tokens, rotated->embed_tokens));
}

INSTANTIATE_TEST_SUITE_P(Modes, RotationInvarianceTest,
                         ::testing::Combine(::testing::Bool(), ::testing::Bool(),
                                            ::testing::Bool()));

TEST(RotationTest, RefusesASecondRotation) {
  auto model = LoadModel();
  ASSERT_TRUE(model);
  RotationOptions options;
  options.down_online_had = true;
  ASSERT_TRUE(RotateModel(*model, options).ok());
  auto again = RotateModel(*model, options);
  EXPECT_EQ(again.code(), absl::StatusCode::kFailedPrecondition) << again;
}

}  // namespace
}  // namespace quantd::quant
