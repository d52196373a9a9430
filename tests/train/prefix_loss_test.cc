#include "worker/train/prefix_loss.h"

#include <cmath>

#include "gtest/gtest.h"

namespace quantd::train {
namespace {

TEST(PrefixLossTest, ComponentsMatchTheirDefinitions) {
  // One layer, batch 1, 3 positions, 2 channels.
  const std::vector<double> h = {1, -2, 3, 0, 0.5, 0};
  const torch::Tensor layer = torch::tensor(h, torch::kFloat64).to(torch::kFloat32).view({1, 3, 2});
  const torch::Tensor prefix = torch::tensor(std::vector<double>{1, 0, 0, 1, 1, 1}, torch::kFloat64)
                                   .to(torch::kFloat32)
                                   .view({3, 2});
  PrefixLossOptions options;
  options.threshold = 1.0;
  options.temperature = 0.5;
  options.top_fraction = 0.5;  // k = 3 of 6

  double relu = 0, lse = 0;
  for (double v : h) {
    relu += std::max(0.0, std::abs(v) - 1.0);
    lse += std::exp(std::abs(v) / 0.5);
  }
  const double outlier = relu / 6 + 0.5 * std::log(lse) + (3.0 + 2.0 + 1.0) / 3;
  // Consecutive differences: (2, 2), (-2.5, 0).
  const double smoothness = (4 + 4 + 6.25 + 0) / 4;
  // cos² of the pairs: (0,1) 0, (0,2) 0.5, (1,2) 0.5, each twice over 6 ordered pairs.
  const double diversity = 2 * (0 + 0.5 + 0.5) / 6;
  const double magnitude = 4.0 / 6;

  const PrefixLoss loss = ComputePrefixLoss({layer}, prefix, options);
  EXPECT_NEAR(loss.outlier.item<double>(), outlier, 1e-5);
  EXPECT_NEAR(loss.smoothness.item<double>(), smoothness, 1e-6);
  EXPECT_NEAR(loss.diversity.item<double>(), diversity, 1e-6);
  EXPECT_NEAR(loss.magnitude.item<double>(), magnitude, 1e-6);
  EXPECT_NEAR(loss.total.item<double>(),
              outlier + 0.1 * smoothness + 0.05 * diversity + 0.01 * magnitude, 1e-5);
  const auto components = loss.Components();
  EXPECT_EQ(components.size(), 4u);
  EXPECT_NEAR(components.at("smoothness"), smoothness, 1e-6);
}

TEST(PrefixLossTest, LayersAreAveragedAndTheDefaultTopShareIsOnePercent) {
  // 200 elements: k = ceil(0.01 · 200) = 2, so the top term is the mean of the two largest.
  torch::Tensor a = torch::zeros({1, 100, 2});
  a[0][10][0] = 10.0;
  a[0][20][1] = -6.0;
  const torch::Tensor b = torch::zeros({1, 100, 2});
  PrefixLossOptions options;
  options.threshold = 64.0;
  const torch::Tensor p = torch::ones({1, 2});
  const double lse_a = std::log(std::exp(10.0) + std::exp(6.0) + 198.0);
  const double lse_b = std::log(200.0);
  const PrefixLoss loss = ComputePrefixLoss({a, b}, p, options);
  EXPECT_NEAR(loss.outlier.item<double>(), (lse_a + 8.0 + lse_b + 0.0) / 2, 1e-4);
  EXPECT_EQ(loss.diversity.item<double>(), 0.0);  // P = 1
}

TEST(PrefixLossTest, GradientReachesThePrefixThroughEveryRegulariser) {
  torch::Tensor p = torch::randn({4, 8}).set_requires_grad(true);
  const torch::Tensor layer = torch::randn({2, 5, 8});
  ComputePrefixLoss({layer}, p, PrefixLossOptions{}).total.backward();
  ASSERT_TRUE(p.grad().defined());
  EXPECT_GT(p.grad().abs().sum().item<double>(), 0.0);
}

}  // namespace
}  // namespace quantd::train
