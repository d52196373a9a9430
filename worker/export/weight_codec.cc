#include "worker/export/weight_codec.h"

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "kernels/fake_quant_torch.h"
#include "worker/export/bit_pack.h"

namespace quantd::exporter {
namespace {

absl::Status CheckScales(const torch::Tensor& scales, int64_t out, int64_t in) {
  if (scales.dim() != 2 || scales.size(0) != out || scales.size(1) < 1 ||
      in % scales.size(1) != 0) {
    return absl::InvalidArgumentError(absl::StrCat("scales [",
                                                   absl::StrJoin(scales.sizes().vec(), ", "),
                                                   "] do not fit a weight [", out, ", ", in, "]"));
  }
  return absl::OkStatus();
}

torch::Tensor Dequantize(const torch::Tensor& q, const torch::Tensor& scales) {
  const int64_t out = q.size(0), in = q.size(1), groups = scales.size(1);
  return (q.to(torch::kFloat32).view({out, groups, in / groups}) * scales.unsqueeze(-1))
      .view({out, in});
}

}  // namespace

absl::StatusOr<torch::Tensor> PackQuantizedWeight(const torch::Tensor& weight,
                                                  const torch::Tensor& scales, int bits) {
  if (bits < 2 || bits > 8) return absl::InvalidArgumentError("packing needs 2..8 bits");
  if (weight.dim() != 2) return absl::InvalidArgumentError("weight must be 2-d");
  const int64_t out = weight.size(0), in = weight.size(1);
  if (auto status = CheckScales(scales, out, in); !status.ok()) return status;
  try {
    torch::NoGradGuard no_grad;
    const torch::Tensor w = weight.detach().to(torch::kCPU).contiguous();
    const torch::Tensor s = scales.detach().to(torch::kCPU, torch::kFloat32).contiguous();
    kernels::FakeQuantConfig config;
    config.bits = bits;
    if (s.size(1) > 1) {
      config.granularity = kernels::QuantGranularity::kPerGroup;
      config.group_size = in / s.size(1);
    } else {
      config.granularity = kernels::QuantGranularity::kPerToken;
    }
    auto q = kernels::QuantizeInt8(w.to(torch::kFloat32), config, s);
    if (!q.ok()) return q.status();
    if (!torch::equal(Dequantize(*q, s).to(w.scalar_type()), w)) {
      const double off = (Dequantize(*q, s) - w.to(torch::kFloat32)).abs().max().item<double>();
      return absl::FailedPreconditionError(absl::StrCat("the weight is not on its ", bits,
                                                        "-bit grid (largest distance ", off,
                                                        "): it changed after quantization"));
    }
    torch::Tensor packed = torch::empty({out, PackedRowBytes(in, bits)}, torch::kUInt8);
    PackSignedBits(q->data_ptr<int8_t>(), out, in, bits, packed.data_ptr<uint8_t>());
    return packed;
  } catch (const std::exception& e) {
    return absl::InternalError(absl::StrCat("packing a weight failed: ", e.what()));
  }
}

absl::StatusOr<torch::Tensor> UnpackQuantizedWeight(const torch::Tensor& packed,
                                                    const torch::Tensor& scales, int bits,
                                                    int64_t in_features, torch::ScalarType dtype) {
  if (bits < 2 || bits > 8) return absl::InvalidArgumentError("unpacking needs 2..8 bits");
  if (packed.dim() != 2 || packed.scalar_type() != torch::kUInt8 ||
      packed.size(1) != PackedRowBytes(in_features, bits)) {
    return absl::InvalidArgumentError(
        absl::StrCat("packed weight is not U8 [out, ", PackedRowBytes(in_features, bits), "]"));
  }
  const int64_t out = packed.size(0);
  if (auto status = CheckScales(scales, out, in_features); !status.ok()) return status;
  try {
    torch::NoGradGuard no_grad;
    const torch::Tensor p = packed.to(torch::kCPU).contiguous();
    torch::Tensor q = torch::empty({out, in_features}, torch::kInt8);
    UnpackSignedBits(p.data_ptr<uint8_t>(), out, in_features, bits, q.data_ptr<int8_t>());
    const torch::Tensor s = scales.to(torch::kCPU, torch::kFloat32).contiguous();
    return Dequantize(q, s).to(dtype);
  } catch (const std::exception& e) {
    return absl::InternalError(absl::StrCat("unpacking a weight failed: ", e.what()));
  }
}

}  // namespace quantd::exporter
