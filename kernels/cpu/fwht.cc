#include "kernels/fwht.h"

#include <algorithm>
#include <vector>

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

}  // namespace

void FwhtRows(float* data, int64_t rows, int64_t n, float scale) {
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
  const float* base = factors.base.data();
  for (int64_t r = 0; r < rows; ++r) {
    float* row = data + r * n;
    if (p > 1) FwhtRows(row, k, p);
    std::fill(mixed.begin(), mixed.end(), 0.0f);
    for (int64_t i = 0; i < k; ++i) {
      float* __restrict out = mixed.data() + i * p;
      for (int64_t j = 0; j < k; ++j) {
        const float b = (transpose ? base[j * k + i] : base[i * k + j]) * scale;
        const float* __restrict in = row + j * p;
        for (int64_t c = 0; c < p; ++c) out[c] += b * in[c];
      }
    }
    std::copy(mixed.begin(), mixed.end(), row);
  }
}

}  // namespace quantd::kernels
