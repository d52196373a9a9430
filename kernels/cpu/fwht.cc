#include "kernels/fwht.h"

#include <algorithm>
#include <vector>

#include "kernels/cpu/multiversion.h"

namespace quantd::kernels {
namespace {

// Stages of length 1, 2 and 4 on one block of 8 values kept in registers.
inline void Radix8(float* x) {
  float a[8];
  for (int i = 0; i < 8; i += 2) {
    a[i] = x[i] + x[i + 1];
    a[i + 1] = x[i] - x[i + 1];
  }
  float b[8];
  for (int i = 0; i < 8; i += 4) {
    b[i] = a[i] + a[i + 2];
    b[i + 1] = a[i + 1] + a[i + 3];
    b[i + 2] = a[i] - a[i + 2];
    b[i + 3] = a[i + 1] - a[i + 3];
  }
  for (int i = 0; i < 4; ++i) {
    x[i] = b[i] + b[i + 4];
    x[i + 4] = b[i] - b[i + 4];
  }
}

// Two stages (h and 2h) fused: one pass over memory instead of two. Inner loop is contiguous.
inline void Radix4Stage(float* __restrict x, int64_t n, int64_t h) {
  for (int64_t i = 0; i < n; i += 4 * h) {
    float* __restrict p0 = x + i;
    float* __restrict p1 = p0 + h;
    float* __restrict p2 = p1 + h;
    float* __restrict p3 = p2 + h;
    for (int64_t j = 0; j < h; ++j) {
      const float s01 = p0[j] + p1[j];
      const float d01 = p0[j] - p1[j];
      const float s23 = p2[j] + p3[j];
      const float d23 = p2[j] - p3[j];
      p0[j] = s01 + s23;
      p1[j] = d01 + d23;
      p2[j] = s01 - s23;
      p3[j] = d01 - d23;
    }
  }
}

inline void Radix2Stage(float* __restrict x, int64_t n, int64_t h) {
  for (int64_t i = 0; i < n; i += 2 * h) {
    float* __restrict p0 = x + i;
    float* __restrict p1 = p0 + h;
    for (int64_t j = 0; j < h; ++j) {
      const float a = p0[j];
      const float b = p1[j];
      p0[j] = a + b;
      p1[j] = a - b;
    }
  }
}

void FwhtRow(float* x, int64_t n) {
  int64_t h = 1;
  if (n >= 8) {
    for (int64_t i = 0; i < n; i += 8) Radix8(x + i);
    h = 8;
  }
  for (; 4 * h <= n; h *= 4) Radix4Stage(x, n, h);
  if (h < n) Radix2Stage(x, n, h);
}

void ScaleRow(float* __restrict x, int64_t n, float scale) {
  for (int64_t i = 0; i < n; ++i) x[i] *= scale;
}

// mixed[i] = scale · Σ_j b[i, j] · in[j] over k chunks of length p, b row-major k×k. With
// p a multiple of kWidth, each output block of kWidth columns stays in registers while the k
// input blocks stream from L1, instead of re-reading the whole output for every input chunk.
QUANTD_MULTIVERSION void MixChunks(const float* b, int64_t k, int64_t p, float scale,
                                   const float* in, float* mixed) {
  constexpr int64_t kWidth = 16;
  if (p % kWidth == 0) {
    for (int64_t c0 = 0; c0 < p; c0 += kWidth) {
      for (int64_t i = 0; i < k; ++i) {
        float acc[kWidth] = {};
        const float* b_row = b + i * k;
        for (int64_t j = 0; j < k; ++j) {
          const float* src = in + j * p + c0;
          for (int64_t c = 0; c < kWidth; ++c) acc[c] += b_row[j] * src[c];
        }
        float* dst = mixed + i * p + c0;
        for (int64_t c = 0; c < kWidth; ++c) dst[c] = acc[c] * scale;
      }
    }
    return;
  }
  std::fill(mixed, mixed + k * p, 0.0f);
  for (int64_t i = 0; i < k; ++i) {
    float* __restrict out = mixed + i * p;
    for (int64_t j = 0; j < k; ++j) {
      const float coeff = b[i * k + j];
      const float* __restrict src = in + j * p;
      for (int64_t c = 0; c < p; ++c) out[c] += coeff * src[c];
    }
  }
  for (int64_t e = 0; e < k * p; ++e) mixed[e] *= scale;
}

}  // namespace

QUANTD_MULTIVERSION void FwhtRows(float* data, int64_t rows, int64_t n, float scale) {
  for (int64_t r = 0; r < rows; ++r) {
    float* row = data + r * n;
    FwhtRow(row, n);
    if (scale != 1.0f) ScaleRow(row, n, scale);
  }
}

void HadamardTransformRows(const HadamardFactors& factors, float* data, int64_t rows,
                           bool orthonormal, bool transpose) {
  const int64_t n = factors.n;
  const int64_t k = factors.base_order;
  const int64_t p = int64_t{1} << factors.log2_pow2;
  const float scale = orthonormal ? OrthonormalScale(n) : 1.0f;
  if (k == 1) {
    FwhtRows(data, rows, n, scale);
    return;
  }
  // Row as a k×p matrix X (chunk i = X[i, :]): M·x = B·X·H_p, so FWHT every chunk, then mix
  // chunks with the k×k base, each output chunk an axpy sum over contiguous chunks.
  std::vector<float> mixed(n);
  std::vector<float> b(factors.base);
  if (transpose) {
    for (int64_t i = 0; i < k; ++i) {
      for (int64_t j = 0; j < k; ++j) b[i * k + j] = factors.base[j * k + i];
    }
  }
  for (int64_t r = 0; r < rows; ++r) {
    float* row = data + r * n;
    if (p > 1) FwhtRows(row, k, p);
    MixChunks(b.data(), k, p, scale, row, mixed.data());
    std::copy(mixed.begin(), mixed.end(), row);
  }
}

}  // namespace quantd::kernels
