#include "kernels/hadamard_torch.h"

#include <algorithm>
#include <string>

#include "kernels/fwht.h"
#include "kernels/torch/cuda_scope.h"

namespace quantd::kernels {
namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

constexpr int kMaxFactorLog2 = 7;

absl::Status CheckInput(const torch::Tensor& x, const HadamardFactors& factors) {
  if (x.dim() == 0 || x.size(-1) != factors.n) {
    return absl::InvalidArgumentError("Hadamard transform of order " + std::to_string(factors.n) +
                                      " needs a last dimension of that size");
  }
  const auto type = x.scalar_type();
  if (type != torch::kFloat && type != torch::kBFloat16 && type != torch::kHalf) {
    return absl::InvalidArgumentError("Hadamard transform supports fp32, bf16 and fp16 tensors");
  }
  return absl::OkStatus();
}

// The factors travel through autograd as tensors and ints, so backward needs no outside state.
HadamardFactors FactorsFromSaved(AutogradContext* ctx) {
  HadamardFactors f;
  f.n = ctx->saved_data["n"].toInt();
  f.base_order = ctx->saved_data["k"].toInt();
  f.log2_pow2 = static_cast<int>(ctx->saved_data["m"].toInt());
  const torch::Tensor base = ctx->saved_data["base"].toTensor();
  f.base.assign(base.data_ptr<float>(), base.data_ptr<float>() + base.numel());
  return f;
}

// `transform(data, rows)` in place on one fp32 copy of x's rows of n (a second copy only for
// non-contiguous input), split across ATen's intra-op threads, rounded back to x's dtype.
template <typename RowsFn>
torch::Tensor TransformRowsOnCpu(const torch::Tensor& x, int64_t n, const RowsFn& transform) {
  torch::Tensor work = x.to(torch::kFloat, /*non_blocking=*/false, /*copy=*/true).contiguous();
  float* data = work.data_ptr<float>();
  // Grain: enough rows for ~64k elements per task.
  const int64_t grain = std::max<int64_t>(1, 65536 / n);
  at::parallel_for(0, work.numel() / n, grain,
                   [&](int64_t begin, int64_t end) { transform(data + begin * n, end - begin); });
  return work.to(x.scalar_type());
}

// `launch(in, out, rows, stream)` (a raw CUDA kernel, returning "" or its error) from a
// contiguous x into a new tensor; throws with `what` on a failed launch.
template <typename Launch>
torch::Tensor TransformRowsOnCuda(const torch::Tensor& x, int64_t n, const CudaKernelScope& scope,
                                  const char* what, const Launch& launch) {
  const torch::Tensor in = x.contiguous();
  torch::Tensor out = torch::empty_like(in);
  const char* error = launch(in.data_ptr(), out.data_ptr(), in.numel() / n, scope.stream());
  TORCH_CHECK(error[0] == '\0', what, ": ", error);
  return out;
}

torch::Tensor TransformCpu(const torch::Tensor& x, const HadamardFactors& f, bool orthonormal,
                           bool transpose) {
  return TransformRowsOnCpu(x, f.n, [&](float* data, int64_t rows) {
    HadamardTransformRows(f, data, rows, orthonormal, transpose);
  });
}

// CUDA tensors the raw kernels can take (see CudaKernelScope).
bool CudaKernelFits(const torch::Tensor& x, const HadamardFactors& f) {
  return x.is_cuda() && f.n <= 32768 && f.base_order <= 1024 && CudaKernelScope(x).usable();
}

torch::Tensor TransformCuda(const torch::Tensor& x, const HadamardFactors& f, bool orthonormal,
                            bool transpose) {
  CudaKernelScope scope(x);
  if (!scope.usable() || f.n > 32768 || f.base_order > 1024) {
    return HadamardTransformTorchOps(x, f, orthonormal, transpose).value();
  }
  torch::Tensor base;
  if (f.base_order > 1) {
    base = torch::from_blob(const_cast<float*>(f.base.data()), {f.base_order, f.base_order},
                            torch::kFloat)
               .to(x.device());
  }
  return TransformRowsOnCuda(x, f.n, scope, "CUDA Hadamard transform",
                             [&](const void* in, void* out, int64_t rows, void* stream) {
                               return HadamardTransformCuda(
                                   in, out, DeviceDTypeOf(x), rows, f,
                                   base.defined() ? base.data_ptr<float>() : nullptr, orthonormal,
                                   transpose, stream);
                             });
}

// The kernel for x's device: kernels/fwht.h loops on the CPU, the CUDA twin on a GPU.
torch::Tensor TransformKernel(const torch::Tensor& x, const HadamardFactors& f, bool orthonormal,
                              bool transpose) {
  return x.is_cuda() ? TransformCuda(x, f, orthonormal, transpose)
                     : TransformCpu(x, f, orthonormal, transpose);
}

class HadamardFunction : public torch::autograd::Function<HadamardFunction> {
 public:
  static torch::Tensor forward(AutogradContext* ctx, const torch::Tensor& x,
                               const HadamardFactors& f, bool orthonormal, bool transpose) {
    ctx->saved_data["n"] = f.n;
    ctx->saved_data["k"] = f.base_order;
    ctx->saved_data["m"] = static_cast<int64_t>(f.log2_pow2);
    ctx->saved_data["base"] = torch::from_blob(const_cast<float*>(f.base.data()),
                                               {static_cast<int64_t>(f.base.size())}, torch::kFloat)
                                  .clone();
    ctx->saved_data["orthonormal"] = orthonormal;
    ctx->saved_data["transpose"] = transpose;
    return TransformKernel(x, f, orthonormal, transpose);
  }

  static variable_list backward(AutogradContext* ctx, variable_list grad_outputs) {
    const HadamardFactors f = FactorsFromSaved(ctx);
    const bool orthonormal = ctx->saved_data["orthonormal"].toBool();
    const bool transpose = ctx->saved_data["transpose"].toBool();
    torch::Tensor grad = TransformKernel(grad_outputs[0], f, orthonormal, !transpose);
    return {grad, torch::Tensor(), torch::Tensor(), torch::Tensor()};
  }
};

// Sylvester FWHT of every last-dim row of x (a power of two ≤ 32768 on CUDA) times `scale`, in
// fp32 arithmetic, rounded once to x's dtype. CUDA tensors need a usable CudaKernelScope.
torch::Tensor ScaledFwht(const torch::Tensor& x, float scale) {
  const int64_t n = x.size(-1);
  if (!x.device().is_cpu()) {
    CudaKernelScope scope(x);
    if (!scope.usable() || n > 32768) {
      return (HadamardTransformTorchOps(x, FactorHadamard(n), /*orthonormal=*/false).value() *
              scale)
          .to(x.scalar_type());
    }
    return TransformRowsOnCuda(x, n, scope, "CUDA FWHT",
                               [&](const void* in, void* out, int64_t rows, void* stream) {
                                 return FwhtCuda(in, out, DeviceDTypeOf(x), rows, n, scale, stream);
                               });
  }
  return TransformRowsOnCpu(x, n,
                            [&](float* data, int64_t rows) { FwhtRows(data, rows, n, scale); });
}

// ScaledFwht under autograd: H is symmetric, so the backward pass is the same transform.
class ScaledFwhtFunction : public torch::autograd::Function<ScaledFwhtFunction> {
 public:
  static torch::Tensor forward(AutogradContext* ctx, const torch::Tensor& x, double scale) {
    ctx->saved_data["scale"] = scale;
    return ScaledFwht(x, static_cast<float>(scale));
  }
  static variable_list backward(AutogradContext* ctx, variable_list grad_outputs) {
    const auto scale = static_cast<float>(ctx->saved_data["scale"].toDouble());
    return {ScaledFwht(grad_outputs[0], scale), torch::Tensor()};
  }
};

// True when `cache` holds an order × order matrix on x's device in x's dtype.
bool CacheFits(const torch::Tensor& cache, int64_t order, const torch::Tensor& x) {
  return cache.defined() && cache.size(0) == order && cache.device() == x.device() &&
         cache.scalar_type() == x.scalar_type();
}

// Online rotations with a base up to this order run as one matmul with the dense matrix.
constexpr int64_t kDenseOnlineUpTo = 2048;
// Rows whose base is at least this order go through HadamardTransformSplit: the fused kernels'
// k multiply-adds per element cost more than the split's matmul there. H100
// (online_hadamard_bench, kernels/cuda/PERFORMANCE.md): split/fused time 0.78 and 0.74 in fp32
// and 0.23 and 0.24 in bf16 at k = 108 and 172; at 20 and 28, 1.18–1.52 in fp32 (fused wins) and
// 0.79–0.97 in bf16 (a small gain, left fused: the split rounds 16-bit rows twice).
constexpr int64_t kSplitMinBase = 64;

// Where HadamardTransformSplit is expected to beat the fused kernel: bases of order ≥
// kSplitMinBase where the CUDA kernels run, and 16-bit rows of those on the CPU (there
// online_hadamard_bench with 1024–2048 rows gave split/fused time 0.42–0.71 in bf16 at k = 108
// and 172, but 0.95–1.31 in fp32, so fp32 stays fused). 16-bit rows need a ±1 base, which
// 16 bits hold exactly (not the random orthogonal fallback); the CPU has no fp16 matmul.
bool OnlineSplitPays(const torch::Tensor& x, const HadamardFactors& f) {
  const auto type = x.scalar_type();
  if (f.base_order < kSplitMinBase || (type != torch::kFloat && !f.is_hadamard)) return false;
  if (x.device().is_cpu()) return type == torch::kBFloat16;
  return x.is_cuda() && (int64_t{1} << f.log2_pow2) <= 32768 && CudaKernelScope(x).usable();
}

}  // namespace

absl::StatusOr<torch::Tensor> HadamardTransform(const torch::Tensor& x,
                                                const HadamardFactors& factors, bool orthonormal,
                                                bool transpose) {
  if (absl::Status s = CheckInput(x, factors); !s.ok()) return s;
  if (!x.device().is_cpu() && !CudaKernelFits(x, factors)) {
    return HadamardTransformTorchOps(x, factors, orthonormal, transpose);
  }
  try {
    return HadamardFunction::apply(x, factors, orthonormal, transpose);
  } catch (const c10::Error& e) {
    return absl::InternalError(e.what_without_backtrace());
  }
}

absl::StatusOr<torch::Tensor> HadamardTransformTorchOps(const torch::Tensor& x,
                                                        const HadamardFactors& factors,
                                                        bool orthonormal, bool transpose) {
  if (absl::Status s = CheckInput(x, factors); !s.ok()) return s;
  const int64_t k = factors.base_order;
  const int64_t p = int64_t{1} << factors.log2_pow2;
  torch::Tensor y = x.to(torch::kFloat).reshape({-1, k, p});
  const int64_t rows = y.size(0);
  // H_p = H_{2^m1} ⊗ H_{2^m2} ⊗ ... (Sylvester), each factor of order ≤ 128 applied as one small
  // dense matmul along its axis: at most three matmuls for p ≤ 2^21 instead of log2(p) passes.
  const int m = factors.log2_pow2;
  const int parts = (m + kMaxFactorLog2 - 1) / kMaxFactorLog2;
  int64_t before = 1;  // product of the factor orders to the left of the current one
  for (int part = 0; part < parts; ++part) {
    const int bits = m / parts + (part < m % parts ? 1 : 0);
    const int64_t order = int64_t{1} << bits;
    const int64_t after = p / (before * order);
    const torch::Tensor h = HadamardMatrix(FactorHadamard(order), false).to(x.device());
    y = torch::matmul(h, y.reshape({rows * k * before, order, after}));
    before *= order;
  }
  y = y.reshape({rows, k, p});
  if (k > 1) {
    torch::Tensor base =
        torch::from_blob(const_cast<float*>(factors.base.data()), {k, k}, torch::kFloat)
            .clone()
            .to(x.device());
    if (transpose) base = base.t();
    y = torch::matmul(base, y);  // [k, k] x [rows, k, p]
  }
  if (orthonormal) y = y * OrthonormalScale(factors.n);
  return y.reshape(x.sizes()).to(x.scalar_type());
}

absl::StatusOr<torch::Tensor> HadamardTransformSplit(const torch::Tensor& x,
                                                     const HadamardFactors& f,
                                                     torch::Tensor* base_cache) {
  if (absl::Status s = CheckInput(x, f); !s.ok()) return s;
  if (f.base_order == 1) return HadamardTransform(x, f, /*orthonormal=*/true);
  const int64_t k = f.base_order;
  const int64_t p = int64_t{1} << f.log2_pow2;
  if (!CacheFits(*base_cache, k, x)) {
    *base_cache = torch::from_blob(const_cast<float*>(f.base.data()), {k, k}, torch::kFloat)
                      .to(x.device(), x.scalar_type(), /*non_blocking=*/false, /*copy=*/true);
  }
  try {
    const torch::Tensor transformed = ScaledFwhtFunction::apply(
        x.reshape({-1, k, p}), static_cast<double>(OrthonormalScale(f.n)));
    return torch::matmul(*base_cache, transformed).reshape(x.sizes());
  } catch (const c10::Error& e) {
    return absl::InternalError(e.what_without_backtrace());
  }
}

torch::Tensor HadamardMatrix(const HadamardFactors& factors, bool orthonormal) {
  const std::vector<float> dense = DenseHadamard(factors);
  torch::Tensor m =
      torch::from_blob(const_cast<float*>(dense.data()), {factors.n, factors.n}, torch::kFloat)
          .clone();
  if (orthonormal) m.mul_(OrthonormalScale(factors.n));
  return m;
}

absl::StatusOr<torch::Tensor> OnlineHadamard(const torch::Tensor& x, const HadamardFactors& factors,
                                             torch::Tensor* matrix_cache) {
  if (factors.base_order == 1) return HadamardTransform(x, factors, /*orthonormal=*/true);
  if (absl::Status s = CheckInput(x, factors); !s.ok()) return s;
  if (factors.n > kDenseOnlineUpTo) {
    if (OnlineSplitPays(x, factors)) return HadamardTransformSplit(x, factors, matrix_cache);
    return HadamardTransform(x, factors, /*orthonormal=*/true);
  }
  if (!CacheFits(*matrix_cache, factors.n, x)) {
    *matrix_cache = HadamardMatrix(factors, /*orthonormal=*/true)
                        .to(x.device(), x.scalar_type())
                        .t()
                        .contiguous();
  }
  return torch::matmul(x, *matrix_cache);
}

}  // namespace quantd::kernels
