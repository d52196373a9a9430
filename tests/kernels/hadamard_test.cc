#include "kernels/hadamard.h"

#include <cmath>
#include <random>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace quantd::kernels {
namespace {

// Exact integer check of H·Hᵀ = n·I for a ±1 matrix.
void ExpectHadamard(const std::vector<int8_t>& h, int64_t n, const std::string& what) {
  ASSERT_EQ(static_cast<int64_t>(h.size()), n * n) << what;
  for (int8_t v : h) ASSERT_TRUE(v == 1 || v == -1) << what;
  for (int64_t r = 0; r < n; ++r) {
    for (int64_t s = r; s < n; ++s) {
      int64_t dot = 0;
      for (int64_t c = 0; c < n; ++c) dot += h[r * n + c] * h[s * n + c];
      ASSERT_EQ(dot, r == s ? n : 0) << what << " rows " << r << "," << s;
    }
  }
}

// Float check of M·Mᵀ = n·I on row pairs of the full matrix (all pairs when n is small).
void ExpectOrthogonalRows(const HadamardFactors& f, double tol) {
  const int64_t n = f.n;
  std::mt19937 rng(static_cast<uint32_t>(n));
  std::uniform_int_distribution<int64_t> pick(0, n - 1);
  const bool all = n <= 256;
  const int64_t pairs = all ? n * n : 300;
  for (int64_t t = 0; t < pairs; ++t) {
    const int64_t r = all ? t / n : pick(rng);
    const int64_t s = all ? t % n : (t % 3 == 0 ? r : pick(rng));
    double dot = 0;
    for (int64_t c = 0; c < n; ++c) {
      dot += static_cast<double>(HadamardEntry(f, r, c)) * HadamardEntry(f, s, c);
    }
    ASSERT_NEAR(dot, r == s ? n : 0.0, tol * n) << f.construction << " rows " << r << "," << s;
  }
}

TEST(HadamardTest, DirectConstructionsAreHadamard) {
  // Sylvester, Paley I (prime and GF(27), GF(343)), Paley II (prime and GF(25)), Williamson,
  // and doubling.
  const std::vector<std::pair<int64_t, std::string>> cases = {
      {1, "sylvester"},     {2, "sylvester"},       {8, "sylvester"},       {12, "paley1(q=11)"},
      {20, "paley1(q=19)"}, {28, "paley1(q=27)"},   {36, "paley2(q=17)"},   {52, "paley2(q=25)"},
      {92, "williamson"},   {108, "paley1(q=107)"}, {116, "williamson"},    {148, "paley2(q=73)"},
      {156, "williamson"},  {172, "williamson"},    {344, "paley1(q=343)"}, {40, "x sylvester(2)"},
      {44, "paley1(q=43)"}, {60, "paley1(q=59)"},   {140, "paley1(q=139)"}};
  for (const auto& [n, expected] : cases) {
    std::string how;
    const auto h = ConstructHadamard(n, &how);
    ASSERT_TRUE(h.has_value()) << n;
    EXPECT_THAT(how, ::testing::HasSubstr(expected)) << n;
    ExpectHadamard(*h, n, how);
  }
}

TEST(HadamardTest, NoConstructionForImpossibleOrders) {
  EXPECT_FALSE(ConstructHadamard(6, nullptr).has_value());
  EXPECT_FALSE(ConstructHadamard(43, nullptr).has_value());
  EXPECT_FALSE(ConstructHadamard(0, nullptr).has_value());
}

TEST(HadamardTest, LlamaAndStoriesSizesFactorIntoKnownMatrices) {
  struct Case {
    int64_t n;
    int64_t base_order;
  };
  // Hidden, intermediate and head sizes of Llama-2/3 7B-70B (Mistral-7B shares 14336) and
  // stories260K, then Llama-3.2 1B/3B (2048, 3072) and TinyLlama (5632).
  const std::vector<Case> cases = {{8, 1},      {64, 1},   {128, 1},     {172, 172},   {4096, 1},
                                   {5120, 20},  {8192, 1}, {11008, 172}, {13824, 108}, {14336, 28},
                                   {28672, 28}, {2048, 1}, {3072, 12},   {5632, 44}};
  for (const auto& c : cases) {
    const HadamardFactors f = FactorHadamard(c.n);
    EXPECT_TRUE(f.is_hadamard) << c.n;
    EXPECT_EQ(f.base_order, c.base_order) << c.n << " " << f.construction;
    EXPECT_EQ(f.base_order << f.log2_pow2, c.n);
    std::vector<int8_t> base(f.base.begin(), f.base.end());
    ExpectHadamard(base, f.base_order, f.construction);
    for (int64_t c2 = 0; c2 < c.n; c2 += 997) ASSERT_EQ(std::fabs(HadamardEntry(f, 5, c2)), 1.0f);
    ExpectOrthogonalRows(f, 0.0);
  }
}

TEST(HadamardTest, DenseMatchesEntriesAndIsOrthogonal) {
  for (int64_t n : {8, 40, 172}) {
    const HadamardFactors f = FactorHadamard(n);
    const std::vector<float> m = DenseHadamard(f);
    for (int64_t r = 0; r < n; ++r) {
      for (int64_t s = 0; s < n; ++s) {
        float dot = 0;
        for (int64_t c = 0; c < n; ++c) dot += m[r * n + c] * m[s * n + c];
        ASSERT_EQ(dot, r == s ? static_cast<float>(n) : 0.0f) << n;
      }
    }
  }
}

TEST(HadamardTest, RandomOrthogonalFallbackWhenNoConstructionIsKnown) {
  // 188 = 47 * 4: no table entry, 187 and 93 are not prime powers, 94 has no matrix.
  const HadamardFactors f = FactorHadamard(188, 7);
  EXPECT_FALSE(f.is_hadamard);
  EXPECT_EQ(f.base_order, 47);
  EXPECT_EQ(f.log2_pow2, 2);
  EXPECT_THAT(f.construction, ::testing::HasSubstr("random-orthogonal"));
  ExpectOrthogonalRows(f, 1e-5);
  // Deterministic for a seed, different across seeds.
  EXPECT_EQ(FactorHadamard(188, 7).base, f.base);
  EXPECT_NE(FactorHadamard(188, 8).base, f.base);
  // An odd order falls back as a whole.
  const HadamardFactors odd = FactorHadamard(43, 1);
  EXPECT_FALSE(odd.is_hadamard);
  ExpectOrthogonalRows(odd, 1e-5);
}

}  // namespace
}  // namespace quantd::kernels
