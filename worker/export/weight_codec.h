// Quantized weights to and from their stored form: packed integers (bit_pack.h) and fp32
// scales, one per output channel ([out, 1]) or per group of `group_size` inputs
// ([out, in / group_size]). The dequantized weight is (q · scale in fp32) cast to the model
// dtype — the same single rounding as kernels/fake_quant_torch.h's FakeQuantizeStatic, so a
// weight that QuantizeModel fake-quantized comes back bit for bit. CPU work; thread-safe.
#ifndef QUANTD_WORKER_EXPORT_WEIGHT_CODEC_H_
#define QUANTD_WORKER_EXPORT_WEIGHT_CODEC_H_

#include <torch/torch.h>

#include <cstdint>

#include "absl/status/statusor.h"

namespace quantd::exporter {

// U8 [out, ceil(in·bits/8)] from `weight` [out, in] (any device/dtype) and its `scales`.
// FAILED_PRECONDITION when the weight is not exactly scales · q for integers q of `bits` bits
// (a weight changed after quantization); INVALID_ARGUMENT for shapes that do not fit.
absl::StatusOr<torch::Tensor> PackQuantizedWeight(const torch::Tensor& weight,
                                                  const torch::Tensor& scales, int bits);

// The weight [out, in_features] in `dtype` on the CPU from packed U8 rows and fp32 scales.
// INVALID_ARGUMENT for shapes or dtypes that do not fit.
absl::StatusOr<torch::Tensor> UnpackQuantizedWeight(const torch::Tensor& packed,
                                                    const torch::Tensor& scales, int bits,
                                                    int64_t in_features, torch::ScalarType dtype);

}  // namespace quantd::exporter

#endif  // QUANTD_WORKER_EXPORT_WEIGHT_CODEC_H_
