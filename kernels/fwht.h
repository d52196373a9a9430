// Fast Walsh–Hadamard transforms on the CPU, in place on contiguous float rows.
//
// Convention: each row x (length n) becomes y = s · M·x, where M is the matrix of
// HadamardFactors (M = B ⊗ H_{2^m}, kernels/hadamard.h), or y = s · Mᵀ·x with `transpose`.
// For a batch X of row vectors this is Y = s · X·Mᵀ (or s · X·M). s = 1/sqrt(n) when
// `orthonormal` (M/sqrt(n) is orthogonal, so the transform preserves norms), else 1.
// Cost per row: n·log2(2^m) adds for the Sylvester part plus n·k multiply-adds for the base.
//
// Thread safety: functions touch only the buffers passed in; distinct buffers may be
// transformed concurrently. Preconditions (not checked; the torch wrappers check them): `data`
// holds rows·n floats; FwhtRows needs n a power of two.
#ifndef QUANTD_KERNELS_FWHT_H_
#define QUANTD_KERNELS_FWHT_H_

#include <cmath>
#include <cstdint>

#include "kernels/device.h"
#include "kernels/hadamard.h"

namespace quantd::kernels {

// Sylvester-order FWHT of each row (H_n·x, H_n symmetric), times `scale`.
void FwhtRows(float* data, int64_t rows, int64_t n, float scale = 1.0f);

// y = scale · M·x (or Mᵀ·x) for each row of length factors.n.
void HadamardTransformRows(const HadamardFactors& factors, float* data, int64_t rows,
                           bool orthonormal, bool transpose = false);

// 1/sqrt(n): the factor that makes M orthogonal.
inline float OrthonormalScale(int64_t n) {
  return static_cast<float>(1.0 / std::sqrt(static_cast<double>(n)));
}

// CUDA twin of HadamardTransformRows (contract of kernels/device.h): `rows` rows of `dtype`
// from `in` to `out` (device pointers; in == out transforms in place, other overlaps are not
// allowed). n ≤ 32768; arithmetic in fp32 (how the work is split: kernels/cuda/PERFORMANCE.md;
// the largest rows need up to 128 KiB of shared memory per block: sm_80 and later). `base_device` is the k×k fp32 base of `factors`
// in device memory (nullptr when factors.base_order is 1); k ≤ 1024. The caller makes the
// pointers' device current.
const char* HadamardTransformCuda(const void* in, void* out, DeviceDType dtype, int64_t rows,
                                  const HadamardFactors& factors, const float* base_device,
                                  bool orthonormal, bool transpose, void* stream);

// Power-of-two rows only: FWHT times `scale` (n ≤ 32768), in place when in == out.
const char* FwhtCuda(const void* in, void* out, DeviceDType dtype, int64_t rows, int64_t n,
                     float scale, void* stream);

}  // namespace quantd::kernels

#endif  // QUANTD_KERNELS_FWHT_H_
