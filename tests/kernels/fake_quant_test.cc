#include "kernels/fake_quant.h"

#include <cmath>
#include <random>
#include <string>
#include <vector>

#include "gtest/gtest.h"

namespace quantd::kernels {
namespace {

std::vector<float> Gaussian(int64_t count, uint32_t seed, float sigma = 1.0f) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> dist(0.0f, sigma);
  std::vector<float> x(count);
  for (auto& v : x) v = dist(rng);
  return x;
}

// Index of the scale of element (r, c), written independently of the kernel.
int64_t ScaleIndex(const FakeQuantConfig& c, int64_t r, int64_t col, int64_t cols) {
  if (c.granularity == QuantGranularity::kPerTensor) return 0;
  if (c.granularity == QuantGranularity::kPerToken) return r;
  return r * (cols / c.group_size) + col / c.group_size;
}

struct Layout {
  QuantGranularity granularity;
  int64_t group_size;
};

TEST(FakeQuantTest, RoundTripWithinHalfStepOnTheIntegerGrid) {
  const int64_t rows = 6, cols = 256;
  const std::vector<Layout> layouts = {{QuantGranularity::kPerTensor, 0},
                                       {QuantGranularity::kPerToken, 0},
                                       {QuantGranularity::kPerGroup, 32},
                                       {QuantGranularity::kPerGroup, 128}};
  for (const Layout& layout : layouts) {
    for (int bits : {2, 3, 4, 8, 16}) {
      const FakeQuantConfig config{bits, layout.granularity, layout.group_size};
      ASSERT_STREQ(CheckFakeQuant(config, rows, cols), "");
      const std::vector<float> x = Gaussian(rows * cols, bits);
      std::vector<float> out(x.size());
      std::vector<float> scales(NumScales(config, rows, cols));
      FakeQuantizeDynamic(x.data(), rows, cols, config, 1.0f, out.data(), scales.data());
      // Each scale is max|x| of its segment over QuantMax.
      std::vector<float> seg_max(scales.size(), 0.0f);
      for (int64_t r = 0; r < rows; ++r) {
        for (int64_t c = 0; c < cols; ++c) {
          float& m = seg_max[ScaleIndex(config, r, c, cols)];
          m = std::max(m, std::fabs(x[r * cols + c]));
        }
      }
      for (size_t s = 0; s < scales.size(); ++s) {
        EXPECT_FLOAT_EQ(scales[s], seg_max[s] / static_cast<float>(QuantMax(bits)));
      }
      for (int64_t r = 0; r < rows; ++r) {
        for (int64_t c = 0; c < cols; ++c) {
          const float s = scales[ScaleIndex(config, r, c, cols)];
          const float v = out[r * cols + c];
          // s/2 plus the float rounding of x/s and q·s.
          const float slack = 4 * 1.2e-7f * std::fabs(x[r * cols + c]);
          ASSERT_LE(std::fabs(v - x[r * cols + c]), s / 2 + slack) << bits;
          const float q = v / s;
          ASSERT_NEAR(q, std::nearbyint(q), 1e-3 + 4e-7 * std::fabs(q)) << "off grid";
          ASSERT_GE(std::nearbyint(q), -static_cast<float>(QuantMax(bits))) << bits;
          ASSERT_LE(std::nearbyint(q), static_cast<float>(QuantMax(bits))) << bits;
        }
      }
    }
  }
}

TEST(FakeQuantTest, StaticScaleClampsToTheTwosComplementRange) {
  const FakeQuantConfig config{4, QuantGranularity::kPerTensor, 0};
  const float scale = 0.5f;
  const std::vector<float> x = {-10.0f, -4.0f, -3.9f, 0.26f, 1.25f, 1.75f, 3.5f, 3.6f, 100.0f};
  std::vector<float> out(x.size());
  FakeQuantize(x.data(), 1, static_cast<int64_t>(x.size()), config, &scale, out.data());
  // q = clamp(round_half_even(x / 0.5), -8, 7) * 0.5
  const std::vector<float> want = {-4.0f, -4.0f, -4.0f, 0.5f, 1.0f, 2.0f, 3.5f, 3.5f, 3.5f};
  for (size_t i = 0; i < x.size(); ++i) EXPECT_FLOAT_EQ(out[i], want[i]) << i;
  std::vector<int8_t> q(x.size());
  QuantizeToInt8(x.data(), 1, static_cast<int64_t>(x.size()), config, &scale, q.data());
  const std::vector<int8_t> want_q = {-8, -8, -8, 1, 2, 4, 7, 7, 7};
  EXPECT_EQ(q, want_q);
}

TEST(FakeQuantTest, ClippingRatioShrinksTheScaleAndZeroSegmentsStayZero) {
  const FakeQuantConfig config{8, QuantGranularity::kPerToken, 0};
  std::vector<float> x = Gaussian(3 * 64, 5);
  for (int64_t c = 0; c < 64; ++c) x[64 + c] = 0.0f;  // row 1 all zeros
  std::vector<float> full(3), clipped(3), out(x.size());
  ComputeScales(x.data(), 3, 64, config, 1.0f, full.data());
  FakeQuantizeDynamic(x.data(), 3, 64, config, 0.8f, out.data(), clipped.data());
  EXPECT_FLOAT_EQ(clipped[0], 0.8f * full[0]);
  EXPECT_FLOAT_EQ(clipped[2], 0.8f * full[2]);
  EXPECT_EQ(full[1], 1.0f);
  for (int64_t c = 0; c < 64; ++c) EXPECT_EQ(out[64 + c], 0.0f);
  // Clipped values saturate at the grid ends.
  for (int64_t c = 0; c < 64; ++c) {
    EXPECT_LE(std::fabs(out[c]), 128 * clipped[0] * (1 + 1e-6f));
  }
}

TEST(FakeQuantTest, MseSearchFindsAShrinkThatBeatsMaxScaling) {
  const int64_t rows = 8, cols = 512;
  std::vector<float> w = Gaussian(rows * cols, 9, 0.02f);
  for (int64_t r = 0; r < rows; ++r) w[r * cols + r] = 0.3f;  // one large weight per channel
  for (int bits : {3, 4}) {
    const FakeQuantConfig config{bits, QuantGranularity::kPerToken, 0};
    std::vector<float> scales(rows), shrink(rows);
    MseSearchScales(w.data(), rows, cols, config, ShrinkSearch{}, scales.data(), shrink.data());
    std::vector<float> max_scales(rows);
    ComputeScales(w.data(), rows, cols, config, 1.0f, max_scales.data());
    // Errors measured through FakeQuantize, independently of the search loop.
    auto sse = [&](const std::vector<float>& s, int64_t r) {
      std::vector<float> out(cols);
      FakeQuantize(w.data() + r * cols, 1, cols, config, &s[r], out.data());
      double e = 0;
      for (int64_t c = 0; c < cols; ++c) e += std::pow(out[c] - w[r * cols + c], 2);
      return e;
    };
    for (int64_t r = 0; r < rows; ++r) {
      EXPECT_LT(shrink[r], 1.0f) << "outlier channel should clip";
      EXPECT_GT(shrink[r], 0.2f);
      EXPECT_FLOAT_EQ(scales[r], shrink[r] * max_scales[r]);
      EXPECT_LT(sse(scales, r), sse(max_scales, r)) << r;
      // No grid point does better.
      for (int i = 0; i < 80; ++i) {
        std::vector<float> other = scales;
        other[r] = (1.0f - i / 100.0f) * max_scales[r];
        EXPECT_LE(sse(scales, r), sse(other, r) * (1 + 1e-5)) << r << " p " << i;
      }
    }
  }
}

TEST(FakeQuantTest, CheckRejectsBadConfigs) {
  EXPECT_STRNE(CheckFakeQuant({1, QuantGranularity::kPerToken, 0}, 2, 8), "");
  EXPECT_STRNE(CheckFakeQuant({17, QuantGranularity::kPerToken, 0}, 2, 8), "");
  EXPECT_STRNE(CheckFakeQuant({4, QuantGranularity::kPerGroup, 0}, 2, 8), "");
  EXPECT_STRNE(CheckFakeQuant({4, QuantGranularity::kPerGroup, 3}, 2, 8), "");
  EXPECT_STREQ(CheckFakeQuant({4, QuantGranularity::kPerGroup, 4}, 2, 8), "");
}

}  // namespace
}  // namespace quantd::kernels
