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

torch::Tensor TransformCpu(const torch::Tensor& x, const HadamardFactors& f, bool orthonormal,
                           bool transpose) {
  // One fp32 copy (a second only for non-contiguous input); the transform runs in place on it.
  torch::Tensor work = x.to(torch::kFloat, /*non_blocking=*/false, /*copy=*/true).contiguous();
  const int64_t n = f.n;
  const int64_t rows = work.numel() / n;
  float* data = work.data_ptr<float>();
  // Grain: enough rows for ~64k elements per task.
  const int64_t grain = std::max<int64_t>(1, 65536 / n);
  at::parallel_for(0, rows, grain, [&](int64_t begin, int64_t end) {
    HadamardTransformRows(f, data + begin * n, end - begin, orthonormal, transpose);
  });
  return work.to(x.scalar_type());
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
  const torch::Tensor in = x.contiguous();
  torch::Tensor out = torch::empty_like(in);
  torch::Tensor base;
  if (f.base_order > 1) {
    base = torch::from_blob(const_cast<float*>(f.base.data()), {f.base_order, f.base_order},
                            torch::kFloat)
               .to(x.device());
  }
  const char* error = HadamardTransformCuda(
      in.data_ptr(), out.data_ptr(), DeviceDTypeOf(in), in.numel() / f.n, f,
      base.defined() ? base.data_ptr<float>() : nullptr, orthonormal, transpose, scope.stream());
  TORCH_CHECK(error[0] == '\0', "CUDA Hadamard transform: ", error);
  return out;
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

torch::Tensor HadamardMatrix(const HadamardFactors& factors, bool orthonormal) {
  const std::vector<float> dense = DenseHadamard(factors);
  torch::Tensor m =
      torch::from_blob(const_cast<float*>(dense.data()), {factors.n, factors.n}, torch::kFloat)
          .clone();
  if (orthonormal) m.mul_(OrthonormalScale(factors.n));
  return m;
}

absl::StatusOr<torch::Tensor> OnlineHadamard(const torch::Tensor& x, const HadamardFactors& factors,
                                             torch::Tensor* dense_cache) {
  constexpr int64_t kDenseUpTo = 2048;
  if (factors.base_order == 1 || factors.n > kDenseUpTo) {
    return HadamardTransform(x, factors, /*orthonormal=*/true);
  }
  if (absl::Status s = CheckInput(x, factors); !s.ok()) return s;
  if (!dense_cache->defined() || dense_cache->device() != x.device() ||
      dense_cache->scalar_type() != x.scalar_type()) {
    *dense_cache = HadamardMatrix(factors, /*orthonormal=*/true)
                       .to(x.device(), x.scalar_type())
                       .t()
                       .contiguous();
  }
  return torch::matmul(x, *dense_cache);
}

}  // namespace quantd::kernels
