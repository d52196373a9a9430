#include "kernels/cpu/galois_field.h"

#include <utility>

namespace quantd::kernels {
namespace {

using Poly = std::vector<int64_t>;  // coefficients over GF(p), lowest first

void Trim(Poly* f) {
  while (!f->empty() && f->back() == 0) f->pop_back();
}

// Remainder of f modulo the monic g, over GF(p).
Poly Remainder(Poly f, const Poly& g, int64_t p) {
  const size_t dg = g.size() - 1;
  Trim(&f);
  while (f.size() > dg) {
    const int64_t lead = f.back();
    const size_t shift = f.size() - 1 - dg;
    for (size_t i = 0; i <= dg; ++i) {
      f[shift + i] = ((f[shift + i] - lead * g[i]) % p + p) % p;
    }
    Trim(&f);
  }
  return f;
}

// The monic polynomial of degree `degree` whose lower coefficients are the base-p digits of
// `index`.
Poly MonicFromIndex(int64_t index, int degree, int64_t p) {
  Poly f(degree + 1, 0);
  for (int i = 0; i < degree; ++i) {
    f[i] = index % p;
    index /= p;
  }
  f[degree] = 1;
  return f;
}

int64_t IntPow(int64_t base, int exponent) {
  int64_t result = 1;
  for (int i = 0; i < exponent; ++i) result *= base;
  return result;
}

bool IsIrreducible(const Poly& f, int64_t p) {
  const int degree = static_cast<int>(f.size()) - 1;
  for (int d = 1; d <= degree / 2; ++d) {
    for (int64_t index = 0; index < IntPow(p, d); ++index) {
      if (Remainder(f, MonicFromIndex(index, d, p), p).empty()) return false;
    }
  }
  return true;
}

}  // namespace

bool PrimePower(int64_t q, int64_t* p, int* e) {
  if (q < 2) return false;
  int64_t prime = q;
  for (int64_t d = 2; d * d <= q; ++d) {
    if (q % d == 0) {
      prime = d;
      break;
    }
  }
  int exponent = 0;
  while (q % prime == 0) {
    q /= prime;
    ++exponent;
  }
  if (q != 1) return false;
  *p = prime;
  *e = exponent;
  return true;
}

std::optional<GaloisField> GaloisField::Create(int64_t q) {
  int64_t p = 0;
  int e = 0;
  if (!PrimePower(q, &p, &e)) return std::nullopt;
  for (int64_t index = 0; index < IntPow(p, e); ++index) {
    Poly f = MonicFromIndex(index, e, p);
    if (IsIrreducible(f, p)) return GaloisField(p, e, std::move(f));
  }
  return std::nullopt;  // unreachable: an irreducible of every degree exists
}

GaloisField::GaloisField(int64_t p, int e, std::vector<int64_t> modulus)
    : p_(p), e_(e), q_(IntPow(p, e)), modulus_(std::move(modulus)), chi_(q_, -1) {
  chi_[0] = 0;
  for (int64_t x = 1; x < q_; ++x) chi_[Mul(x, x)] = 1;
}

int64_t GaloisField::Sub(int64_t a, int64_t b) const {
  int64_t result = 0;
  int64_t place = 1;
  for (int i = 0; i < e_; ++i) {
    const int64_t digit = ((a % p_) - (b % p_) + p_) % p_;
    result += digit * place;
    place *= p_;
    a /= p_;
    b /= p_;
  }
  return result;
}

int64_t GaloisField::Mul(int64_t a, int64_t b) const {
  Poly fa(e_), fb(e_);
  for (int i = 0; i < e_; ++i) {
    fa[i] = a % p_;
    fb[i] = b % p_;
    a /= p_;
    b /= p_;
  }
  Poly product(2 * e_, 0);
  for (int i = 0; i < e_; ++i) {
    for (int j = 0; j < e_; ++j) product[i + j] = (product[i + j] + fa[i] * fb[j]) % p_;
  }
  const Poly reduced = Remainder(std::move(product), modulus_, p_);
  int64_t result = 0;
  for (size_t i = reduced.size(); i-- > 0;) result = result * p_ + reduced[i];
  return result;
}

}  // namespace quantd::kernels
