#include "kernels/fwht.h"

#include <cmath>
#include <random>
#include <vector>

#include "gtest/gtest.h"
#include "kernels/hadamard.h"

namespace quantd::kernels {
namespace {

std::vector<float> RandomRows(int64_t rows, int64_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> dist(0.0f, 1.0f);
  std::vector<float> x(rows * n);
  for (auto& v : x) v = dist(rng);
  return x;
}

// Reference y = scale · M·x (or Mᵀ·x) in double, from the matrix entries.
std::vector<double> DenseReference(const HadamardFactors& f, const std::vector<float>& x,
                                   int64_t rows, double scale, bool transpose) {
  const int64_t n = f.n;
  std::vector<double> y(rows * n, 0.0);
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t i = 0; i < n; ++i) {
      double acc = 0;
      for (int64_t j = 0; j < n; ++j) {
        const double m = transpose ? HadamardEntry(f, j, i) : HadamardEntry(f, i, j);
        acc += m * x[r * n + j];
      }
      y[r * n + i] = acc * scale;
    }
  }
  return y;
}

// fp32 tolerance: a sum of n terms of unit size has rounding error ~ eps·sqrt(n)·log(n).
void ExpectClose(const std::vector<float>& got, const std::vector<double>& want, double scale,
                 int64_t n) {
  const double tol = 4e-7 * std::sqrt(static_cast<double>(n)) * std::log2(2.0 * n) * scale *
                     std::sqrt(static_cast<double>(n)) * 4;
  ASSERT_EQ(got.size(), want.size());
  for (size_t i = 0; i < got.size(); ++i) ASSERT_NEAR(got[i], want[i], tol) << "index " << i;
}

TEST(FwhtTest, PowerOfTwoMatchesDenseSylvester) {
  for (int64_t n : {1, 2, 4, 8, 16, 32, 64, 128, 1024, 4096}) {
    const int64_t rows = n >= 1024 ? 2 : 5;
    const HadamardFactors f = FactorHadamard(n);
    std::vector<float> x = RandomRows(rows, n, static_cast<uint32_t>(n));
    const auto want = DenseReference(f, x, rows, 1.0, false);
    FwhtRows(x.data(), rows, n);
    ExpectClose(x, want, 1.0, n);
  }
}

TEST(FwhtTest, FactoredSizesMatchDenseMatmul) {
  // Paley I (20, 108), Paley II over GF(25) (52), Williamson (172), doubled and factored sizes.
  for (int64_t n : {20, 40, 52, 160, 172, 344, 432, 5120, 11008}) {
    const HadamardFactors f = FactorHadamard(n);
    const int64_t rows = n > 1000 ? 1 : 3;
    for (bool transpose : {false, true}) {
      for (bool orthonormal : {false, true}) {
        if (n > 1000 && orthonormal != transpose) continue;  // keep the dense reference quick
        std::vector<float> x = RandomRows(rows, n, static_cast<uint32_t>(n + transpose));
        const double scale = orthonormal ? 1.0 / std::sqrt(static_cast<double>(n)) : 1.0;
        const auto want = DenseReference(f, x, rows, scale, transpose);
        HadamardTransformRows(f, x.data(), rows, orthonormal, transpose);
        ExpectClose(x, want, scale, n);
      }
    }
  }
}

TEST(FwhtTest, OrthonormalTransformPreservesNormAndInvertsWithTranspose) {
  for (int64_t n : {64, 172, 188, 14336}) {
    const HadamardFactors f = FactorHadamard(n, 3);
    const std::vector<float> x = RandomRows(2, n, 11);
    std::vector<float> y = x;
    HadamardTransformRows(f, y.data(), 2, /*orthonormal=*/true);
    double nx = 0, ny = 0;
    for (size_t i = 0; i < x.size(); ++i) {
      nx += x[i] * x[i];
      ny += y[i] * y[i];
    }
    EXPECT_NEAR(ny / nx, 1.0, 1e-5) << n;
    HadamardTransformRows(f, y.data(), 2, /*orthonormal=*/true, /*transpose=*/true);
    for (size_t i = 0; i < x.size(); ++i) ASSERT_NEAR(y[i], x[i], 1e-4) << n << " " << i;
  }
}

}  // namespace
}  // namespace quantd::kernels
