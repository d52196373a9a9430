#include "kernels/fake_quant_torch.h"

#include <algorithm>
#include <limits>
#include <string>
#include <vector>

#include "kernels/torch/cuda_scope.h"

namespace quantd::kernels {
namespace {

struct Shape {
  int64_t rows = 0;
  int64_t cols = 0;
};

absl::StatusOr<Shape> CheckInput(const torch::Tensor& x, const FakeQuantConfig& config) {
  if (x.dim() == 0) {
    return absl::InvalidArgumentError("fake quantization needs a tensor of rank ≥ 1");
  }
  const auto type = x.scalar_type();
  if (type != torch::kFloat && type != torch::kBFloat16 && type != torch::kHalf) {
    return absl::InvalidArgumentError("fake quantization supports fp32, bf16 and fp16 tensors");
  }
  Shape shape;
  shape.cols = x.size(-1);
  shape.rows = shape.cols == 0 ? 0 : x.numel() / shape.cols;
  const std::string problem = CheckFakeQuant(config, shape.rows, shape.cols);
  if (!problem.empty()) return absl::InvalidArgumentError("fake quantization: " + problem);
  return shape;
}

std::vector<int64_t> ScaleShape(const torch::Tensor& x, const FakeQuantConfig& config) {
  std::vector<int64_t> shape(x.sizes().begin(), x.sizes().end());
  switch (config.granularity) {
    case QuantGranularity::kPerTensor:
      return {};
    case QuantGranularity::kPerToken:
      shape.back() = 1;
      return shape;
    case QuantGranularity::kPerGroup:
      shape.back() /= config.group_size;
      return shape;
  }
  return shape;
}

// The segments (elements sharing a scale) as rows of a 2-D view: [segments, length].
torch::Tensor SegmentView(const torch::Tensor& x, const FakeQuantConfig& config) {
  switch (config.granularity) {
    case QuantGranularity::kPerTensor:
      return x.reshape({1, -1});
    case QuantGranularity::kPerToken:
      return x.reshape({-1, x.size(-1)});
    case QuantGranularity::kPerGroup:
      return x.reshape({-1, config.group_size});
  }
  return x;
}

// Per-token view of the same memory: per-group segments are rows of length group_size.
FakeQuantConfig AsRows(const FakeQuantConfig& config) {
  FakeQuantConfig rows = config;
  if (config.granularity == QuantGranularity::kPerGroup) {
    rows.granularity = QuantGranularity::kPerToken;
  }
  return rows;
}

// Scales expanded to the layout shape; throws c10::Error when they do not broadcast.
torch::Tensor ExpandScales(const torch::Tensor& scales, const torch::Tensor& x,
                           const std::vector<int64_t>& layout) {
  torch::Tensor s = scales.to(x.device(), torch::kFloat);
  if (layout.empty() && s.numel() == 1) return s.reshape({});
  return s.expand(layout);
}

torch::Tensor SteRound(const torch::Tensor& v) { return v + (torch::round(v) - v).detach(); }

torch::Tensor SteFormula(const torch::Tensor& x, const FakeQuantConfig& config,
                         const torch::Tensor& segment_scales) {
  const torch::Tensor seg = SegmentView(x.to(torch::kFloat), config);
  const torch::Tensor v = seg / segment_scales;
  const torch::Tensor q = torch::clamp(SteRound(v), static_cast<double>(QuantMin(config.bits)),
                                       static_cast<double>(QuantMax(config.bits)));
  return (q * segment_scales).reshape(x.sizes()).to(x.scalar_type());
}

}  // namespace

absl::StatusOr<FakeQuantOutput> FakeQuantizeDynamic(const torch::Tensor& x,
                                                    const FakeQuantConfig& config,
                                                    float clip_ratio) {
  auto shape = CheckInput(x, config);
  if (!shape.ok()) return shape.status();
  torch::NoGradGuard no_grad;
  if (CudaKernelScope scope(x); scope.usable()) {
    const torch::Tensor in = x.contiguous();
    torch::Tensor out = torch::empty_like(in);
    torch::Tensor scales = torch::empty({NumScales(config, shape->rows, shape->cols)},
                                        in.options().dtype(torch::kFloat));
    const char* error = FakeQuantizeDynamicCuda(in.data_ptr(), out.data_ptr(), DeviceDTypeOf(in),
                                                shape->rows, shape->cols, config, clip_ratio,
                                                scales.data_ptr<float>(), scope.stream());
    if (error[0] != '\0') return absl::InternalError(std::string("fake quantization: ") + error);
    return FakeQuantOutput{out.reshape(x.sizes()), scales.reshape(ScaleShape(x, config))};
  }
  if (!x.device().is_cpu()) {
    auto out = FakeQuantizeDynamicSte(x, config, torch::tensor(clip_ratio, x.device()));
    if (!out.ok()) return out.status();
    return FakeQuantOutput{out->values.detach(), out->scales.detach()};
  }
  torch::Tensor work = x.to(torch::kFloat).contiguous();
  torch::Tensor out = torch::empty_like(work);
  const int64_t count = NumScales(config, shape->rows, shape->cols);
  torch::Tensor scales = torch::empty({count}, torch::kFloat);
  const float* in = work.data_ptr<float>();
  float* dst = out.data_ptr<float>();
  float* sc = scales.data_ptr<float>();
  if (config.granularity == QuantGranularity::kPerTensor) {
    ComputeScales(in, shape->rows, shape->cols, config, clip_ratio, sc);
    at::parallel_for(0, shape->rows, 1, [&](int64_t begin, int64_t end) {
      const int64_t offset = begin * shape->cols;
      FakeQuantize(in + offset, end - begin, shape->cols, config, sc, dst + offset);
    });
  } else {
    const FakeQuantConfig rows = AsRows(config);
    const int64_t len = shape->rows * shape->cols / count;
    at::parallel_for(0, count, 1, [&](int64_t begin, int64_t end) {
      FakeQuantizeDynamic(in + begin * len, end - begin, len, rows, clip_ratio, dst + begin * len,
                          sc + begin);
    });
  }
  return FakeQuantOutput{out.reshape(x.sizes()).to(x.scalar_type()),
                         scales.reshape(ScaleShape(x, config))};
}

absl::StatusOr<torch::Tensor> FakeQuantizeStatic(const torch::Tensor& x,
                                                 const FakeQuantConfig& config,
                                                 const torch::Tensor& scales) {
  auto shape = CheckInput(x, config);
  if (!shape.ok()) return shape.status();
  torch::NoGradGuard no_grad;
  torch::Tensor full;
  try {
    full = ExpandScales(scales, x, ScaleShape(x, config)).contiguous();
  } catch (const c10::Error& e) {
    return absl::InvalidArgumentError(std::string("fake quantization: scales do not broadcast: ") +
                                      e.what_without_backtrace());
  }
  if (CudaKernelScope scope(x); scope.usable()) {
    const torch::Tensor in = x.contiguous();
    torch::Tensor out = torch::empty_like(in);
    const char* error =
        FakeQuantizeCuda(in.data_ptr(), out.data_ptr(), DeviceDTypeOf(in), shape->rows, shape->cols,
                         config, full.data_ptr<float>(), scope.stream());
    if (error[0] != '\0') return absl::InternalError(std::string("fake quantization: ") + error);
    return out.reshape(x.sizes());
  }
  if (!x.device().is_cpu()) return SteFormula(x, config, full.reshape({-1, 1}));
  torch::Tensor work = x.to(torch::kFloat).contiguous();
  torch::Tensor out = torch::empty_like(work);
  const float* in = work.data_ptr<float>();
  float* dst = out.data_ptr<float>();
  const float* sc = full.data_ptr<float>();
  const int64_t count = NumScales(config, shape->rows, shape->cols);
  if (config.granularity == QuantGranularity::kPerTensor) {
    at::parallel_for(0, shape->rows, 1, [&](int64_t begin, int64_t end) {
      const int64_t offset = begin * shape->cols;
      FakeQuantize(in + offset, end - begin, shape->cols, config, sc, dst + offset);
    });
  } else {
    const FakeQuantConfig rows = AsRows(config);
    const int64_t len = shape->rows * shape->cols / count;
    at::parallel_for(0, count, 1, [&](int64_t begin, int64_t end) {
      FakeQuantize(in + begin * len, end - begin, len, rows, sc + begin, dst + begin * len);
    });
  }
  return out.reshape(x.sizes()).to(x.scalar_type());
}

absl::StatusOr<torch::Tensor> FakeQuantizeSte(const torch::Tensor& x, const FakeQuantConfig& config,
                                              const torch::Tensor& scales) {
  auto shape = CheckInput(x, config);
  if (!shape.ok()) return shape.status();
  torch::Tensor full;
  try {
    full = ExpandScales(scales, x, ScaleShape(x, config));
  } catch (const c10::Error& e) {
    return absl::InvalidArgumentError(std::string("fake quantization: scales do not broadcast: ") +
                                      e.what_without_backtrace());
  }
  return SteFormula(x, config, full.reshape({-1, 1}));
}

absl::StatusOr<FakeQuantOutput> FakeQuantizeDynamicSte(const torch::Tensor& x,
                                                       const FakeQuantConfig& config,
                                                       const torch::Tensor& clip_ratio) {
  auto shape = CheckInput(x, config);
  if (!shape.ok()) return shape.status();
  const std::vector<int64_t> layout = ScaleShape(x, config);
  const torch::Tensor amax =
      SegmentView(x.to(torch::kFloat), config).abs().amax(-1).reshape(layout);
  torch::Tensor ratio;
  try {
    ratio = ExpandScales(clip_ratio, x, layout);
  } catch (const c10::Error& e) {
    return absl::InvalidArgumentError(
        std::string("fake quantization: clip ratio does not broadcast: ") +
        e.what_without_backtrace());
  }
  torch::Tensor scales = ratio * amax / static_cast<double>(QuantMax(config.bits));
  scales = torch::where(scales > 0, scales, torch::ones_like(scales));
  auto values = FakeQuantizeSte(x, config, scales);
  if (!values.ok()) return values.status();
  return FakeQuantOutput{*values, scales};
}

absl::StatusOr<torch::Tensor> QuantizeInt8(const torch::Tensor& x, const FakeQuantConfig& config,
                                           const torch::Tensor& scales) {
  auto shape = CheckInput(x, config);
  if (!shape.ok()) return shape.status();
  if (config.bits > 8) return absl::InvalidArgumentError("QuantizeInt8 needs bits <= 8");
  torch::NoGradGuard no_grad;
  const torch::Tensor work = x.detach().to(torch::kCPU, torch::kFloat).contiguous();
  torch::Tensor full;
  try {
    full = ExpandScales(scales.detach().cpu(), work, ScaleShape(x, config)).contiguous();
  } catch (const c10::Error& e) {
    return absl::InvalidArgumentError(std::string("fake quantization: scales do not broadcast: ") +
                                      e.what_without_backtrace());
  }
  torch::Tensor q = torch::empty(work.sizes(), torch::kChar);
  QuantizeToInt8(work.data_ptr<float>(), shape->rows, shape->cols, config, full.data_ptr<float>(),
                 q.data_ptr<int8_t>());
  return q;
}

absl::StatusOr<torch::Tensor> MseSearchScales(const torch::Tensor& x, const FakeQuantConfig& config,
                                              const ShrinkSearch& search) {
  if (!x.device().is_cpu()) return MseSearchScalesTorchOps(x, config, search);
  auto shape = CheckInput(x, config);
  if (!shape.ok()) return shape.status();
  torch::NoGradGuard no_grad;
  torch::Tensor work = x.detach().to(torch::kFloat).contiguous();
  const int64_t count = NumScales(config, shape->rows, shape->cols);
  torch::Tensor scales = torch::empty({count}, torch::kFloat);
  const float* in = work.data_ptr<float>();
  float* sc = scales.data_ptr<float>();
  if (config.granularity == QuantGranularity::kPerTensor) {
    MseSearchScales(in, shape->rows, shape->cols, config, search, sc);
  } else {
    const FakeQuantConfig rows = AsRows(config);
    const int64_t len = shape->rows * shape->cols / count;
    at::parallel_for(0, count, 1, [&](int64_t begin, int64_t end) {
      MseSearchScales(in + begin * len, end - begin, len, rows, search, sc + begin);
    });
  }
  return scales.reshape(ScaleShape(x, config)).to(x.device());
}

absl::StatusOr<torch::Tensor> MseSearchScalesTorchOps(const torch::Tensor& x,
                                                      const FakeQuantConfig& config,
                                                      const ShrinkSearch& search,
                                                      int64_t chunk_elements) {
  auto shape = CheckInput(x, config);
  if (!shape.ok()) return shape.status();
  torch::NoGradGuard no_grad;
  const torch::Tensor segments = SegmentView(x.detach().to(torch::kFloat).contiguous(), config);
  const int64_t count = segments.size(0);
  const int64_t length = segments.size(1);
  const double qmin = QuantMin(config.bits);
  const float qmax = static_cast<float>(QuantMax(config.bits));
  const int steps = std::max(1, static_cast<int>(search.max_shrink * search.grid));
  // ratio · max / qmax in fp32 as the kernel computes it; 1 for an all-zero segment. qmax is a
  // tensor: CUDA divides by a host scalar as a multiplication by its reciprocal, one ulp off the
  // kernel's quotient in about half the segments (seen on an H100).
  auto scale_for = [qmax](const torch::Tensor& max_abs, const torch::Tensor& ratio) {
    const torch::Tensor s = max_abs * ratio / torch::full_like(max_abs, qmax);
    return torch::where(s > 0, s, torch::ones_like(s));
  };
  torch::Tensor scales = torch::empty({count}, segments.options());
  const int64_t chunk = std::max<int64_t>(1, chunk_elements / std::max<int64_t>(1, length));
  for (int64_t first = 0; first < count; first += chunk) {
    const torch::Tensor seg = segments.narrow(0, first, std::min(chunk, count - first));
    const torch::Tensor max_abs = seg.abs().amax(1);
    torch::Tensor best_err = torch::full_like(max_abs, std::numeric_limits<float>::infinity());
    torch::Tensor best_ratio = torch::ones_like(max_abs);
    for (int i = 0; i < steps; ++i) {
      const float ratio = 1.0f - static_cast<float>(i) / static_cast<float>(search.grid);
      const torch::Tensor ratio_t = torch::full_like(max_abs, ratio);
      const torch::Tensor s = scale_for(max_abs, ratio_t).unsqueeze(1);
      const torch::Tensor d = (torch::clamp(seg / s, qmin, qmax).round() * s - seg).abs();
      const torch::Tensor err = search.norm == 2.0f ? d.square().sum(1) : d.pow(search.norm).sum(1);
      const torch::Tensor better = err < best_err;
      best_err = torch::where(better, err, best_err);
      best_ratio = torch::where(better, ratio_t, best_ratio);
    }
    scales.narrow(0, first, seg.size(0)).copy_(scale_for(max_abs, best_ratio));
  }
  return scales.reshape(ScaleShape(x, config));
}

}  // namespace quantd::kernels
