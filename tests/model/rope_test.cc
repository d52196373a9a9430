#include "worker/model/rope.h"

#include <cmath>

#include "gtest/gtest.h"

namespace quantd::model {
namespace {

LlamaConfig Config(int64_t head_dim, double theta) {
  LlamaConfig config;
  config.hidden_size = head_dim;
  config.num_attention_heads = 1;
  config.head_dim = head_dim;
  config.rope_theta = theta;
  return config;
}

TEST(RopeTest, DefaultFrequencies) {
  RotaryEmbedding rope(Config(8, 10000.0));
  auto f = rope.inv_freq();
  ASSERT_EQ(f.size(0), 4);
  for (int i = 0; i < 4; ++i) {
    EXPECT_NEAR(f[i].item<double>(), std::pow(10000.0, -2.0 * i / 8), 1e-6) << i;
  }
}

TEST(RopeTest, LinearAndLlama3Scaling) {
  LlamaConfig linear = Config(8, 10000.0);
  linear.rope_scaling.type = RopeScaling::Type::kLinear;
  linear.rope_scaling.factor = 4.0;
  EXPECT_TRUE(torch::allclose(RotaryEmbedding(linear).inv_freq(),
                              RotaryEmbedding(Config(8, 10000.0)).inv_freq() / 4.0));

  // Llama-3.1's settings: wavelengths below 8192/4 keep their frequency, above 8192/1 are
  // divided by 8, and in between are interpolated.
  LlamaConfig l3 = Config(128, 500000.0);
  l3.rope_scaling.type = RopeScaling::Type::kLlama3;
  l3.rope_scaling.factor = 8.0;
  l3.rope_scaling.low_freq_factor = 1.0;
  l3.rope_scaling.high_freq_factor = 4.0;
  l3.rope_scaling.original_max_position_embeddings = 8192;
  auto scaled = RotaryEmbedding(l3).inv_freq();
  auto plain = RotaryEmbedding(Config(128, 500000.0)).inv_freq();
  int kept = 0, divided = 0, blended = 0;
  for (int i = 0; i < 64; ++i) {
    const double p = plain[i].item<double>(), s = scaled[i].item<double>();
    const double wavelen = 2 * M_PI / p;
    if (wavelen < 2048) {
      EXPECT_NEAR(s, p, 1e-6 * p);
      ++kept;
    } else if (wavelen > 8192) {
      EXPECT_NEAR(s, p / 8, 1e-6 * p);
      ++divided;
    } else {
      EXPECT_LT(s, p);
      EXPECT_GT(s, p / 8);
      ++blended;
    }
    if (i > 0) {
      EXPECT_LT(s, scaled[i - 1].item<double>());  // still decreasing
    }
  }
  EXPECT_GT(kept, 0);
  EXPECT_GT(divided, 0);
  EXPECT_GT(blended, 0);
}

TEST(RopeTest, RotationIsRelative) {
  RotaryEmbedding rope(Config(8, 10000.0));
  torch::manual_seed(1);
  auto q = torch::randn({1, 8});
  auto k = torch::randn({1, 8});
  auto at = [&](const torch::Tensor& x, int64_t pos) {
    auto [cos, sin] = rope.CosSin(pos, 1, torch::kFloat32, torch::kCPU);
    return ApplyRotary(x, cos, sin);
  };
  EXPECT_TRUE(torch::allclose(at(q, 0), q));  // position 0 is the identity
  // The rotate_half layout pairs element i with i + 4; each pair keeps its length.
  auto r = at(q, 7);
  for (int i = 0; i < 4; ++i) {
    const double before = std::hypot(q[0][i].item<double>(), q[0][i + 4].item<double>());
    const double after = std::hypot(r[0][i].item<double>(), r[0][i + 4].item<double>());
    EXPECT_NEAR(before, after, 1e-5);
  }
  // q.k depends only on the distance between the positions.
  const double d1 = (at(q, 10) * at(k, 3)).sum().item<double>();
  const double d2 = (at(q, 107) * at(k, 100)).sum().item<double>();
  EXPECT_NEAR(d1, d2, 1e-4);
  EXPECT_GT(std::abs(d1 - (at(q, 10) * at(k, 9)).sum().item<double>()), 1e-4);
}

}  // namespace
}  // namespace quantd::model
