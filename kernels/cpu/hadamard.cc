#include "kernels/hadamard.h"

#include <cmath>
#include <cstring>
#include <utility>

#include "kernels/cpu/galois_field.h"
#include "kernels/cpu/williamson_table.h"
#include "spdlog/spdlog.h"

namespace quantd::kernels {
namespace {

using Matrix = std::vector<int8_t>;  // row-major ±1

Matrix Sylvester(int64_t n) {
  Matrix h(n * n);
  for (int64_t r = 0; r < n; ++r) {
    for (int64_t c = 0; c < n; ++c) h[r * n + c] = (__builtin_popcountll(r & c) % 2) ? -1 : 1;
  }
  return h;
}

Matrix Williamson(const std::array<const char*, 4>& rows) {
  const int64_t m = static_cast<int64_t>(std::strlen(rows[0]));
  const int64_t n = 4 * m;
  // Block (R, C) of the Williamson array is sign * circulant(which).
  static constexpr int kWhich[4][4] = {{0, 1, 2, 3}, {1, 0, 3, 2}, {2, 3, 0, 1}, {3, 2, 1, 0}};
  static constexpr int kSign[4][4] = {{1, 1, 1, 1}, {-1, 1, -1, 1}, {-1, 1, 1, -1}, {-1, -1, 1, 1}};
  Matrix h(n * n);
  for (int br = 0; br < 4; ++br) {
    for (int bc = 0; bc < 4; ++bc) {
      const char* first = rows[kWhich[br][bc]];
      for (int64_t i = 0; i < m; ++i) {
        for (int64_t j = 0; j < m; ++j) {
          const int value = first[((j - i) % m + m) % m] == '+' ? 1 : -1;
          h[(br * m + i) * n + bc * m + j] = static_cast<int8_t>(kSign[br][bc] * value);
        }
      }
    }
  }
  return h;
}

// Jacobsthal matrix Q[i][j] = chi(a_j - a_i) over GF(q).
std::vector<int8_t> Jacobsthal(const GaloisField& field) {
  const int64_t q = field.order();
  std::vector<int8_t> jac(q * q);
  for (int64_t i = 0; i < q; ++i) {
    for (int64_t j = 0; j < q; ++j) {
      jac[i * q + j] = static_cast<int8_t>(field.Chi(field.Sub(j, i)));
    }
  }
  return jac;
}

// q ≡ 3 mod 4: H = I + [[0, 1ᵀ], [-1, Q]], order q + 1.
Matrix PaleyI(const GaloisField& field) {
  const int64_t q = field.order();
  const int64_t n = q + 1;
  const auto jac = Jacobsthal(field);
  Matrix h(n * n);
  for (int64_t r = 0; r < n; ++r) {
    for (int64_t c = 0; c < n; ++c) {
      int s = 0;
      if (r == 0 && c > 0) s = 1;
      if (r > 0 && c == 0) s = -1;
      if (r > 0 && c > 0) s = jac[(r - 1) * q + (c - 1)];
      h[r * n + c] = static_cast<int8_t>(s + (r == c ? 1 : 0));
    }
  }
  return h;
}

// q ≡ 1 mod 4: C = [[0, 1ᵀ], [1, Q]] (symmetric, zero diagonal); every 0 of C becomes
// [[1, -1], [-1, -1]] and every ±1 becomes ±[[1, 1], [1, -1]]. Order 2(q + 1).
Matrix PaleyII(const GaloisField& field) {
  const int64_t q = field.order();
  const int64_t m = q + 1;
  const int64_t n = 2 * m;
  const auto jac = Jacobsthal(field);
  static constexpr int kZero[2][2] = {{1, -1}, {-1, -1}};
  static constexpr int kOne[2][2] = {{1, 1}, {1, -1}};
  Matrix h(n * n);
  for (int64_t r = 0; r < m; ++r) {
    for (int64_t c = 0; c < m; ++c) {
      int s = 0;
      if ((r == 0) != (c == 0)) s = 1;
      if (r > 0 && c > 0) s = jac[(r - 1) * q + (c - 1)];
      for (int a = 0; a < 2; ++a) {
        for (int b = 0; b < 2; ++b) {
          const int v = s == 0 ? kZero[a][b] : s * kOne[a][b];
          h[(2 * r + a) * n + 2 * c + b] = static_cast<int8_t>(v);
        }
      }
    }
  }
  return h;
}

// Direct constructions only (no doubling).
std::optional<Matrix> Direct(int64_t n, std::string* how) {
  if (IsPowerOfTwo(n)) {
    *how = "sylvester(" + std::to_string(n) + ")";
    return Sylvester(n);
  }
  if (n % 4 != 0) return std::nullopt;
  if (const auto* quad = WilliamsonQuadruple(n / 4)) {
    *how = "williamson(n'=" + std::to_string(n / 4) + ")";
    return Williamson(*quad);
  }
  if ((n - 1) % 4 == 3) {
    if (auto field = GaloisField::Create(n - 1)) {
      *how = "paley1(q=" + std::to_string(n - 1) + ")";
      return PaleyI(*field);
    }
  }
  if ((n / 2 - 1) % 4 == 1) {
    if (auto field = GaloisField::Create(n / 2 - 1)) {
      *how = "paley2(q=" + std::to_string(n / 2 - 1) + ")";
      return PaleyII(*field);
    }
  }
  return std::nullopt;
}

// Deterministic normal samples (splitmix64 + Box–Muller), identical on every platform.
class NormalSource {
 public:
  explicit NormalSource(uint64_t seed) : state_(seed) {}
  double Next() {
    const double kTwoPi = 6.283185307179586;
    const double u1 = (static_cast<double>(NextBits() >> 11) + 1.0) / 9007199254740993.0;
    const double u2 = static_cast<double>(NextBits() >> 11) / 9007199254740992.0;
    return std::sqrt(-2.0 * std::log(u1)) * std::cos(kTwoPi * u2);
  }

 private:
  uint64_t NextBits() {
    uint64_t z = (state_ += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
  }
  uint64_t state_;
};

// Rows of a Gaussian matrix orthonormalised (modified Gram–Schmidt, two passes), times sqrt(k).
std::vector<float> RandomOrthogonal(int64_t k, uint64_t seed) {
  NormalSource normal(seed);
  std::vector<double> a(k * k);
  for (auto& v : a) v = normal.Next();
  for (int64_t i = 0; i < k; ++i) {
    double* row = &a[i * k];
    for (int pass = 0; pass < 2; ++pass) {
      for (int64_t j = 0; j < i; ++j) {
        const double* prev = &a[j * k];
        double dot = 0;
        for (int64_t c = 0; c < k; ++c) dot += row[c] * prev[c];
        for (int64_t c = 0; c < k; ++c) row[c] -= dot * prev[c];
      }
    }
    double norm = 0;
    for (int64_t c = 0; c < k; ++c) norm += row[c] * row[c];
    const double inv = 1.0 / std::sqrt(norm);
    for (int64_t c = 0; c < k; ++c) row[c] *= inv;
  }
  std::vector<float> out(k * k);
  const double scale = std::sqrt(static_cast<double>(k));
  for (int64_t i = 0; i < k * k; ++i) out[i] = static_cast<float>(a[i] * scale);
  return out;
}

}  // namespace

std::optional<std::vector<int8_t>> ConstructHadamard(int64_t n, std::string* construction) {
  if (n < 1) return std::nullopt;
  std::string how;
  auto direct = Direct(n, &how);
  if (!direct && n % 8 == 0) {
    // Doubling: [[H, H], [H, -H]] from a matrix of half the order.
    std::string half_how;
    auto half = ConstructHadamard(n / 2, &half_how);
    if (half) {
      const int64_t m = n / 2;
      Matrix h(n * n);
      for (int64_t r = 0; r < n; ++r) {
        for (int64_t c = 0; c < n; ++c) {
          const int sign = (r >= m && c >= m) ? -1 : 1;
          h[r * n + c] = static_cast<int8_t>(sign * (*half)[(r % m) * m + (c % m)]);
        }
      }
      how = half_how + " x sylvester(2)";
      direct = std::move(h);
    }
  }
  if (direct && construction != nullptr) *construction = how;
  return direct;
}

HadamardFactors FactorHadamard(int64_t n, uint64_t fallback_seed) {
  HadamardFactors f;
  f.n = n;
  int twos = 0;
  int64_t odd = n;
  while (odd > 0 && odd % 2 == 0) {
    odd /= 2;
    ++twos;
  }
  if (odd == 1) {
    f.base = {1.0f};
    f.log2_pow2 = twos;
    f.construction = "sylvester(" + std::to_string(n) + ")";
    return f;
  }
  for (int j = 0; j <= twos; ++j) {
    const int64_t k = odd << j;
    std::string how;
    auto base = Direct(k, &how);
    if (!base) continue;
    f.base_order = k;
    f.log2_pow2 = twos - j;
    f.base.assign(base->begin(), base->end());
    f.construction = how + " x sylvester(" + std::to_string(int64_t{1} << f.log2_pow2) + ")";
    return f;
  }
  f.base_order = odd;
  f.log2_pow2 = twos;
  f.base = RandomOrthogonal(odd, fallback_seed);
  f.is_hadamard = false;
  f.construction = "random-orthogonal(k=" + std::to_string(odd) +
                   ", seed=" + std::to_string(fallback_seed) + ") x sylvester(" +
                   std::to_string(int64_t{1} << twos) + ")";
  spdlog::warn(
      "no Hadamard matrix known for order {}: using a seeded random orthogonal matrix instead ({})",
      n, f.construction);
  return f;
}

float HadamardEntry(const HadamardFactors& factors, int64_t row, int64_t col) {
  const int64_t p = int64_t{1} << factors.log2_pow2;
  const float sign = (__builtin_popcountll((row % p) & (col % p)) % 2) ? -1.0f : 1.0f;
  return factors.base[(row / p) * factors.base_order + (col / p)] * sign;
}

std::vector<float> DenseHadamard(const HadamardFactors& factors) {
  const int64_t n = factors.n;
  std::vector<float> m(n * n);
  for (int64_t r = 0; r < n; ++r) {
    for (int64_t c = 0; c < n; ++c) m[r * n + c] = HadamardEntry(factors, r, c);
  }
  return m;
}

}  // namespace quantd::kernels
