// mse_init's shrink search on one weight of a Llama-2-7B down_proj shape ([4096, 11008], W4
// per group of 128), timed three ways: the CPU kernel (all intra-op threads, the path of CPU
// jobs and, before, of GPU jobs too after a copy to the host), the torch-ops search on the CPU,
// and the torch-ops search on CUDA when there is a device (the path of GPU jobs; the CPU
// torch-ops run is then left out unless --cpu-ops). Prints seconds, ratios against the CPU
// kernel measured in the same run, and how many scales agree.
//   mse_search_bench [--rows 4096] [--cols 11008] [--repeats 3] [--cpu-ops]
#include <torch/torch.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <string>

#include "kernels/fake_quant_torch.h"

namespace {

using quantd::kernels::FakeQuantConfig;
using quantd::kernels::QuantGranularity;

// Best of `repeats` wall-clock seconds of `run` (which returns the scales).
double BestSeconds(int repeats, const std::function<torch::Tensor()>& run, torch::Tensor* out) {
  double best = 1e30;
  for (int i = 0; i < repeats; ++i) {
    const auto start = std::chrono::steady_clock::now();
    *out = run();
    if (out->is_cuda()) torch::cuda::synchronize();
    const std::chrono::duration<double> took = std::chrono::steady_clock::now() - start;
    best = std::min(best, took.count());
  }
  return best;
}

torch::Tensor OrExit(absl::StatusOr<torch::Tensor> result) {
  if (!result.ok()) {
    std::fprintf(stderr, "mse_search_bench: %s\n", std::string(result.status().message()).c_str());
    std::exit(1);
  }
  return *std::move(result);
}

}  // namespace

int main(int argc, char** argv) {
  int64_t rows = 4096, cols = 11008;
  int repeats = 3;
  bool cpu_ops = false;  // the torch-ops search on the CPU too when there is a GPU (slow)
  for (int i = 1; i < argc; ++i) {
    const std::string flag = argv[i];
    const char* value = i + 1 < argc ? argv[i + 1] : "0";
    if (flag == "--cpu-ops") cpu_ops = true;
    if (flag == "--rows") {
      rows = std::atoll(value);
      ++i;
    } else if (flag == "--cols") {
      cols = std::atoll(value);
      ++i;
    } else if (flag == "--repeats") {
      repeats = std::atoi(value);
      ++i;
    }
  }
  torch::manual_seed(1);
  const torch::Tensor w = torch::randn({rows, cols}) * 0.02;
  const FakeQuantConfig config{4, QuantGranularity::kPerGroup, 128};
  std::printf("mse search, W4 per group 128, [%lld, %lld] fp32, %d intra-op threads, best of %d\n",
              static_cast<long long>(rows), static_cast<long long>(cols), at::get_num_threads(),
              repeats);
  torch::Tensor kernel, ops;
  const double kernel_s = BestSeconds(
      repeats, [&] { return OrExit(quantd::kernels::MseSearchScales(w, config)); }, &kernel);
  std::printf("%-28s %8.3f s  1.00x\n", "CPU kernel", kernel_s);
  auto same = [&](const torch::Tensor& s) {
    return torch::eq(s.cpu(), kernel).to(torch::kDouble).mean().item<double>();
  };
  if (!torch::cuda::is_available() || cpu_ops) {
    const double ops_s = BestSeconds(
        repeats, [&] { return OrExit(quantd::kernels::MseSearchScalesTorchOps(w, config)); }, &ops);
    std::printf("%-28s %8.3f s  %.2fx  same scales %.4f\n", "torch ops on the CPU", ops_s,
                kernel_s / ops_s, same(ops));
  }
  if (torch::cuda::is_available()) {
    const torch::Tensor on_gpu = w.to(torch::kCUDA);
    torch::Tensor gpu;
    const double gpu_s = BestSeconds(
        repeats, [&] { return OrExit(quantd::kernels::MseSearchScales(on_gpu, config)); }, &gpu);
    std::printf("%-28s %8.3f s  %.2fx  same scales %.4f\n", "torch ops on CUDA", gpu_s,
                kernel_s / gpu_s, same(gpu));
    // What a GPU job paid before: the copy to the host, the CPU kernel, the scales back.
    torch::Tensor via_host;
    const double via_host_s = BestSeconds(
        repeats,
        [&] {
          return OrExit(quantd::kernels::MseSearchScales(on_gpu.cpu(), config)).to(torch::kCUDA);
        },
        &via_host);
    std::printf("%-28s %8.3f s  (the GPU path is %.1fx faster)\n", "CUDA via the CPU kernel",
                via_host_s, via_host_s / gpu_s);
  } else {
    std::printf("no CUDA device: the GPU path is not measured\n");
  }
  return 0;
}
