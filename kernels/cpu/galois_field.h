// Finite field GF(q), q = p^e, just large enough for the Paley constructions (internal).
//
// Elements are the integers 0..q-1; the base-p digits of an element are the coefficients (lowest
// first) of a polynomial over GF(p), taken modulo a monic irreducible polynomial of degree e.
#ifndef QUANTD_KERNELS_CPU_GALOIS_FIELD_H_
#define QUANTD_KERNELS_CPU_GALOIS_FIELD_H_

#include <cstdint>
#include <optional>
#include <vector>

namespace quantd::kernels {

// Writes p and e with q = p^e (p prime, e ≥ 1) and returns true; false when q is not a prime power.
bool PrimePower(int64_t q, int64_t* p, int* e);

class GaloisField {
 public:
  // The field of order q, or nullopt when q is not a prime power.
  static std::optional<GaloisField> Create(int64_t q);

  int64_t order() const { return q_; }
  int64_t Sub(int64_t a, int64_t b) const;
  int64_t Mul(int64_t a, int64_t b) const;
  // Quadratic character: 0 for 0, +1 for a nonzero square, -1 for a non-square.
  int Chi(int64_t a) const { return chi_[a]; }

 private:
  GaloisField(int64_t p, int e, std::vector<int64_t> modulus);

  int64_t p_;
  int e_;
  int64_t q_;
  std::vector<int64_t> modulus_;  // monic irreducible, e+1 coefficients, lowest first
  std::vector<int8_t> chi_;
};

}  // namespace quantd::kernels

#endif  // QUANTD_KERNELS_CPU_GALOIS_FIELD_H_
