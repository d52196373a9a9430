#include "kernels/fake_quant.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "kernels/cpu/multiversion.h"

namespace quantd::kernels {
namespace {

// Rounds half to even for |v| < 2^22 in the default rounding mode, like nearbyint, but
// vectorisable without SSE4.1. Our arguments are clamped to ±2^15.
inline float RoundHalfEven(float v) {
  constexpr float kMagic = 12582912.0f;  // 1.5 · 2^23
  return (v + kMagic) - kMagic;
}

// Segment length: the elements that share one scale, as contiguous runs of length `seg`.
int64_t SegmentLength(const FakeQuantConfig& config, int64_t rows, int64_t cols) {
  switch (config.granularity) {
    case QuantGranularity::kPerTensor:
      return rows * cols;
    case QuantGranularity::kPerToken:
      return cols;
    case QuantGranularity::kPerGroup:
      return config.group_size;
  }
  return cols;
}

float MaxAbs(const float* __restrict x, int64_t len) {
  float m = 0.0f;
  for (int64_t i = 0; i < len; ++i) m = std::max(m, std::fabs(x[i]));
  return m;
}

inline float ScaleFor(float max_abs, float ratio, float qmax) {
  const float s = ratio * max_abs / qmax;
  return s > 0.0f ? s : 1.0f;
}

void QuantizeSegment(const float* __restrict x, int64_t len, float s, float qmin, float qmax,
                     float* __restrict out) {
  for (int64_t i = 0; i < len; ++i) {
    const float v = std::min(std::max(x[i] / s, qmin), qmax);
    out[i] = RoundHalfEven(v) * s;
  }
}

}  // namespace

const char* CheckFakeQuant(const FakeQuantConfig& config, int64_t rows, int64_t cols) {
  if (config.bits < 2 || config.bits > 16) return "bits must be in 2..16";
  if (rows < 0 || cols < 0) return "negative shape";
  if (config.granularity == QuantGranularity::kPerGroup) {
    if (config.group_size <= 0) return "group_size must be positive";
    if (cols % config.group_size != 0) return "group_size must divide the last dimension";
  }
  return "";
}

int64_t NumScales(const FakeQuantConfig& config, int64_t rows, int64_t cols) {
  switch (config.granularity) {
    case QuantGranularity::kPerTensor:
      return 1;
    case QuantGranularity::kPerToken:
      return rows;
    case QuantGranularity::kPerGroup:
      return rows * (cols / config.group_size);
  }
  return rows;
}

QUANTD_MULTIVERSION void ComputeScales(const float* x, int64_t rows, int64_t cols,
                                       const FakeQuantConfig& config, float clip_ratio,
                                       float* scales) {
  const int64_t seg = SegmentLength(config, rows, cols);
  const int64_t count = NumScales(config, rows, cols);
  const float qmax = static_cast<float>(QuantMax(config.bits));
  for (int64_t s = 0; s < count; ++s) {
    scales[s] = ScaleFor(MaxAbs(x + s * seg, seg), clip_ratio, qmax);
  }
}

QUANTD_MULTIVERSION void FakeQuantize(const float* x, int64_t rows, int64_t cols,
                                      const FakeQuantConfig& config, const float* scales,
                                      float* out) {
  const int64_t seg = SegmentLength(config, rows, cols);
  const int64_t count = NumScales(config, rows, cols);
  const float qmin = static_cast<float>(QuantMin(config.bits));
  const float qmax = static_cast<float>(QuantMax(config.bits));
  for (int64_t s = 0; s < count; ++s) {
    QuantizeSegment(x + s * seg, seg, scales[s], qmin, qmax, out + s * seg);
  }
}

void FakeQuantizeDynamic(const float* x, int64_t rows, int64_t cols, const FakeQuantConfig& config,
                         float clip_ratio, float* out, float* scales) {
  ComputeScales(x, rows, cols, config, clip_ratio, scales);
  FakeQuantize(x, rows, cols, config, scales, out);
}

QUANTD_MULTIVERSION void QuantizeToInt8(const float* x, int64_t rows, int64_t cols,
                                        const FakeQuantConfig& config, const float* scales,
                                        int8_t* q) {
  const int64_t seg = SegmentLength(config, rows, cols);
  const int64_t count = NumScales(config, rows, cols);
  const float qmin = static_cast<float>(QuantMin(config.bits));
  const float qmax = static_cast<float>(QuantMax(config.bits));
  for (int64_t s = 0; s < count; ++s) {
    for (int64_t i = s * seg; i < (s + 1) * seg; ++i) {
      const float v = std::min(std::max(x[i] / scales[s], qmin), qmax);
      q[i] = static_cast<int8_t>(RoundHalfEven(v));
    }
  }
}

QUANTD_MULTIVERSION void MseSearchScales(const float* x, int64_t rows, int64_t cols,
                                         const FakeQuantConfig& config, const ShrinkSearch& search,
                                         float* scales, float* best_shrink) {
  const int64_t seg = SegmentLength(config, rows, cols);
  const int64_t count = NumScales(config, rows, cols);
  const float qmin = static_cast<float>(QuantMin(config.bits));
  const float qmax = static_cast<float>(QuantMax(config.bits));
  const int steps = std::max(1, static_cast<int>(search.max_shrink * search.grid));
  const bool squared = search.norm == 2.0f;
  for (int64_t s = 0; s < count; ++s) {
    const float* seg_x = x + s * seg;
    const float max_abs = MaxAbs(seg_x, seg);
    float best_err = std::numeric_limits<float>::infinity();
    float best_p = 1.0f;
    for (int i = 0; i < steps; ++i) {
      const float p = 1.0f - static_cast<float>(i) / static_cast<float>(search.grid);
      const float scale = ScaleFor(max_abs, p, qmax);
      float err = 0.0f;
      for (int64_t j = 0; j < seg; ++j) {
        const float v = std::min(std::max(seg_x[j] / scale, qmin), qmax);
        const float d = std::fabs(RoundHalfEven(v) * scale - seg_x[j]);
        err += squared ? d * d : std::pow(d, search.norm);
      }
      if (err < best_err) {
        best_err = err;
        best_p = p;
      }
    }
    scales[s] = ScaleFor(max_abs, best_p, qmax);
    if (best_shrink != nullptr) best_shrink[s] = best_p;
  }
}

}  // namespace quantd::kernels
