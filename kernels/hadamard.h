// Hadamard matrices of the sizes LLM rotations need (QuaRot/PrefixQuant placement).
//
// A Hadamard matrix H of order n has entries ±1 and H·Hᵀ = n·I. Sizes that are not powers of two
// are handled as M = B ⊗ H_{2^m} (Kronecker product, B on the outer index): B is a Hadamard
// matrix of a small order k with n = k·2^m, and H_{2^m} is the Sylvester matrix, applied with
// the fast Walsh–Hadamard transform (kernels/fwht.h). Constructions of B, tried in this order:
//   - Sylvester (k a power of two), Williamson-type from a published table (k = 4·n' for the
//     n' in the table), Paley I (k = q+1, q ≡ 3 mod 4 a prime power), Paley II (k = 2(q+1),
//     q ≡ 1 mod 4 a prime power), each over GF(q) for prime powers q = p^e.
//   - Where none applies, B is a seeded random orthogonal matrix scaled so that B·Bᵀ = k·I,
//     and a spdlog warning says so. M·Mᵀ = n·I holds in every case; only `is_hadamard` differs.
//
// Sizes used by Llama-2/3 7B–70B and stories260K: 4096, 8192 (Sylvester), 5120 = 20·256
// (Paley I, q = 19), 11008 = 172·64 (Williamson), 13824 = 108·128 (Paley I, q = 107),
// 14336 = 28·512 and 28672 = 28·1024 (Paley I over GF(27)), 172, 64, 8.
//
// Thread safety: all functions are pure (no shared state) and may be called concurrently.
#ifndef QUANTD_KERNELS_HADAMARD_H_
#define QUANTD_KERNELS_HADAMARD_H_

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace quantd::kernels {

// A ±1 Hadamard matrix of order n, row-major, built by one of the direct constructions above
// (no random fallback, no Kronecker split). `construction` (when not null) receives a short
// description such as "paley1(q=27)". Returns nullopt when no construction applies to n.
std::optional<std::vector<int8_t>> ConstructHadamard(int64_t n, std::string* construction);

// M = base ⊗ H_{2^log2_pow2}, of order n = base_order · 2^log2_pow2, with M·Mᵀ = n·I.
struct HadamardFactors {
  int64_t n = 1;
  int64_t base_order = 1;    // k; 1 when n is a power of two
  int log2_pow2 = 0;         // m
  std::vector<float> base;   // k×k row-major, B·Bᵀ = k·I (±1 entries when is_hadamard)
  bool is_hadamard = true;   // false for the random orthogonal fallback
  std::string construction;  // e.g. "sylvester", "williamson(n'=43) x sylvester(64)"
};

// Factors for order n ≥ 1, choosing the smallest base order k for which a direct construction
// exists. `fallback_seed` seeds the random orthogonal base when none exists (deterministic for a
// given seed on every platform; warned about on every call, so build the factors once per size
// and reuse them). Cost: O(k²) plus the GF(q) set-up, microseconds to milliseconds.
HadamardFactors FactorHadamard(int64_t n, uint64_t fallback_seed = 0);

// Entry (row, col) of M, computed without forming M.
float HadamardEntry(const HadamardFactors& factors, int64_t row, int64_t col);

// The dense n×n row-major matrix M of `factors` (unnormalised: M·Mᵀ = n·I). For references and
// for rotating weights offline; n² floats, so not for the online transform.
std::vector<float> DenseHadamard(const HadamardFactors& factors);

// True when n is a power of two (n ≥ 1).
inline bool IsPowerOfTwo(int64_t n) { return n > 0 && (n & (n - 1)) == 0; }

}  // namespace quantd::kernels

#endif  // QUANTD_KERNELS_HADAMARD_H_
