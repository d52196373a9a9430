// Symmetric uniform fake quantization (quantize, then dequantize) on the CPU.
//
// Grid: b-bit two's complement integers q ∈ [-2^(b-1), 2^(b-1) - 1] = [QuantMin, QuantMax], the
// grid of the int4 pack format (kernels/int4_pack.h). Dynamic scale s = clip·max|x| / QuantMax,
// so the largest magnitude lands exactly on ±QuantMax; -2^(b-1) is reached only by values
// beyond the clipped range of a negative sign (clipping, static scales). A segment that is all
// zeros gets s = 1.
//   x̂ = s · clamp(round(x / s), QuantMin, QuantMax), round half to even (as torch.round).
// Inside the clipped range |x̂ - x| ≤ s/2 elementwise.
//
// Layout: x is rows × cols, row-major (a token or an output channel per row). Scales:
//   kPerTensor: 1 scale; kPerToken: one per row; kPerGroup: one per `group_size` consecutive
//   elements of a row (rows × cols/group_size, row-major; group_size must divide cols).
// Thread safety: functions touch only the buffers passed in. Preconditions are those that
// CheckFakeQuant reports; the functions themselves do not check.
#ifndef QUANTD_KERNELS_FAKE_QUANT_H_
#define QUANTD_KERNELS_FAKE_QUANT_H_

#include <cstdint>

#include "kernels/device.h"

namespace quantd::kernels {

enum class QuantGranularity { kPerTensor, kPerToken, kPerGroup };

struct FakeQuantConfig {
  int bits = 8;  // 2..16
  QuantGranularity granularity = QuantGranularity::kPerToken;
  int64_t group_size = 0;  // kPerGroup only
};

inline int64_t QuantMax(int bits) { return (int64_t{1} << (bits - 1)) - 1; }
inline int64_t QuantMin(int bits) { return -(int64_t{1} << (bits - 1)); }

// Empty string when `config` can quantize a rows × cols buffer, else the reason.
const char* CheckFakeQuant(const FakeQuantConfig& config, int64_t rows, int64_t cols);

// Number of scales of the layout above.
int64_t NumScales(const FakeQuantConfig& config, int64_t rows, int64_t cols);

// Dynamic scales: s = clip_ratio · max|x| / QuantMax per segment (clip_ratio in (0, 1]).
void ComputeScales(const float* x, int64_t rows, int64_t cols, const FakeQuantConfig& config,
                   float clip_ratio, float* scales);

// x̂ with the given scales (static, calibrated or dynamic). `out` may alias `x`.
void FakeQuantize(const float* x, int64_t rows, int64_t cols, const FakeQuantConfig& config,
                  const float* scales, float* out);

// ComputeScales then FakeQuantize; the scales are returned for a straight-through-estimator
// backward pass (d x̂/dx = 1 inside the clipped range) or for export.
void FakeQuantizeDynamic(const float* x, int64_t rows, int64_t cols, const FakeQuantConfig& config,
                         float clip_ratio, float* out, float* scales);

// The integer grid values round(x/s) clamped to [QuantMin, QuantMax]; bits ≤ 8.
void QuantizeToInt8(const float* x, int64_t rows, int64_t cols, const FakeQuantConfig& config,
                    const float* scales, int8_t* q);

// Grid search of a shrink factor for weight scales (`mse_init`): for every segment, try
// s = p · max|x| / QuantMax with p = 1 - i/grid for i = 0 .. floor(max_shrink·grid) - 1 and keep
// the p minimising Σ |x̂ - x|^norm. Writes the best scales (and the best p when not null).
struct ShrinkSearch {
  int grid = 100;
  float max_shrink = 0.8f;
  float norm = 2.0f;
};
void MseSearchScales(const float* x, int64_t rows, int64_t cols, const FakeQuantConfig& config,
                     const ShrinkSearch& search, float* scales, float* best_shrink = nullptr);

// CUDA twins (contract of kernels/device.h); x, out and scales are device pointers, `out` may
// alias `x`, results equal the CPU functions' for fp32 (same operations in the same order).
// Dynamic per token / per group: each scale segment's max|x| is reduced and the segment
// quantized in one pass. Dynamic per tensor: a grid-wide max, then the static kernel.
const char* FakeQuantizeDynamicCuda(const void* x, void* out, DeviceDType dtype, int64_t rows,
                                    int64_t cols, const FakeQuantConfig& config, float clip_ratio,
                                    float* scales, void* stream);
// Static: elementwise with the given scales (layout above).
const char* FakeQuantizeCuda(const void* x, void* out, DeviceDType dtype, int64_t rows,
                             int64_t cols, const FakeQuantConfig& config, const float* scales,
                             void* stream);

}  // namespace quantd::kernels

#endif  // QUANTD_KERNELS_FAKE_QUANT_H_
