// The online rotations of Llama layers (R4 before down_proj, R3 before o_proj sizes), timed on
// one device three ways against a copy of the same bytes (into a buffer allocated once)
// measured in the same run:
//   - fused: HadamardTransform, one kernel (FWHT of the chunks, base mixing in fp32);
//   - split: HadamardTransformSplit, the FWHT kernel then the base as a batched matmul;
//   - online: OnlineHadamard, the path jobs take (one of the two, or a dense matmul).
// Prints GB/s (bytes read + written once), % of the copy and split / fused time.
//   online_hadamard_bench [--device cpu|cuda] [--rows 8192] [--repeats 10]
#include <torch/torch.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <string>

#include "kernels/hadamard_torch.h"

namespace {

using quantd::kernels::FactorHadamard;
using quantd::kernels::HadamardFactors;

// Mean seconds of `run` over `repeats` calls after two warm-ups, the device drained each time.
double MeanSeconds(int repeats, const torch::Device& device, const std::function<void()>& run) {
  auto drain = [&] {
    if (device.is_cuda()) torch::cuda::synchronize();
  };
  for (int i = 0; i < 2; ++i) run();
  drain();
  const auto start = std::chrono::steady_clock::now();
  for (int i = 0; i < repeats; ++i) run();
  drain();
  const std::chrono::duration<double> took = std::chrono::steady_clock::now() - start;
  return took.count() / repeats;
}

torch::Tensor OrExit(absl::StatusOr<torch::Tensor> result) {
  if (!result.ok()) {
    std::fprintf(stderr, "online_hadamard_bench: %s\n",
                 std::string(result.status().message()).c_str());
    std::exit(1);
  }
  return *std::move(result);
}

}  // namespace

int main(int argc, char** argv) {
  std::string device_name = "cpu";
  int64_t rows = 8192;
  int repeats = 10;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string flag = argv[i];
    if (flag == "--device") {
      device_name = argv[i + 1];
    } else if (flag == "--rows") {
      rows = std::atoll(argv[i + 1]);
    } else if (flag == "--repeats") {
      repeats = std::atoi(argv[i + 1]);
    } else {
      std::fprintf(stderr,
                   "usage: online_hadamard_bench [--device cpu|cuda] [--rows N] "
                   "[--repeats N]\n");
      return 2;
    }
  }
  if (rows < 1 || repeats < 1) {
    std::fprintf(stderr, "online_hadamard_bench: --rows and --repeats must be >= 1\n");
    return 2;
  }
  const torch::Device device(device_name);
  torch::NoGradGuard no_grad;
  std::printf("online_hadamard_bench on %s, %lld rows, mean of %d calls\n", device.str().c_str(),
              static_cast<long long>(rows), repeats);
  std::printf("%-7s %-5s %-30s %9s %9s %9s %9s %6s %6s %7s\n", "n", "dtype", "factors", "copy GB/s",
              "fused", "split", "online", "fused%", "split%", "split/f");
  for (int64_t n : {5120, 11008, 13824, 14336, 28672}) {
    const HadamardFactors f = FactorHadamard(n);
    for (auto type : {torch::kFloat, torch::kBFloat16}) {
      const torch::Tensor x = torch::randn({rows, n}).to(device, type);
      const double bytes = 2.0 * static_cast<double>(x.numel()) * x.element_size();
      torch::Tensor split_cache, online_cache, sink;
      torch::Tensor copied = torch::empty_like(x);
      const double copy = MeanSeconds(repeats, device, [&] { copied.copy_(x); });
      const double fused = MeanSeconds(repeats, device, [&] {
        sink = OrExit(quantd::kernels::HadamardTransform(x, f, /*orthonormal=*/true));
      });
      const double split = MeanSeconds(repeats, device, [&] {
        sink = OrExit(quantd::kernels::HadamardTransformSplit(x, f, &split_cache));
      });
      const double online = MeanSeconds(repeats, device, [&] {
        sink = OrExit(quantd::kernels::OnlineHadamard(x, f, &online_cache));
      });
      std::printf("%-7lld %-5s %-30s %9.1f %9.1f %9.1f %9.1f %5.0f%% %5.0f%% %7.2f\n",
                  static_cast<long long>(n), type == torch::kFloat ? "fp32" : "bf16",
                  f.construction.c_str(), bytes / copy / 1e9, bytes / fused / 1e9,
                  bytes / split / 1e9, bytes / online / 1e9, 100 * copy / fused, 100 * copy / split,
                  split / fused);
    }
  }
  return 0;
}
