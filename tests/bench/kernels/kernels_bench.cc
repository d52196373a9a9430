// Throughput of the CPU kernels, single-threaded, with the ratios that matter printed at the end:
//   - Hadamard transform (kernels/fwht.h) vs torch::matmul with the same dense matrix, same rows;
//   - fake quantization (kernels/fake_quant.h) vs the same formula written with torch ops.
// Run: kernels_bench [--benchmark_min_time=0.5]  (all Google Benchmark flags apply)
#include <torch/torch.h>

#include <cstdio>
#include <map>
#include <string>
#include <vector>

#include "benchmark/benchmark.h"
#include "kernels/fake_quant.h"
#include "kernels/fake_quant_torch.h"
#include "kernels/fwht.h"
#include "kernels/hadamard.h"
#include "kernels/hadamard_torch.h"

namespace quantd::kernels {
namespace {

constexpr int64_t kRows = 64;  // tokens per call

void FwhtKernel(benchmark::State& state, int64_t n) {
  const HadamardFactors f = FactorHadamard(n);
  torch::Tensor x = torch::randn({kRows, n});
  for (auto _ : state) {
    HadamardTransformRows(f, x.data_ptr<float>(), kRows, /*orthonormal=*/true);
    benchmark::DoNotOptimize(x.data_ptr<float>());
  }
  state.SetItemsProcessed(state.iterations() * kRows * n);
  state.SetLabel(f.construction);
}

void DenseMatmul(benchmark::State& state, int64_t n) {
  const torch::Tensor m = HadamardMatrix(FactorHadamard(n), /*orthonormal=*/true).t().contiguous();
  const torch::Tensor x = torch::randn({kRows, n});
  for (auto _ : state) {
    torch::Tensor y = torch::matmul(x, m);
    benchmark::DoNotOptimize(y.data_ptr<float>());
  }
  state.SetItemsProcessed(state.iterations() * kRows * n);
}

const FakeQuantConfig& ConfigFor(int which) {
  static const FakeQuantConfig configs[] = {{8, QuantGranularity::kPerToken, 0},
                                            {4, QuantGranularity::kPerGroup, 128}};
  return configs[which];
}

void FakeQuantKernel(benchmark::State& state, int which) {
  const FakeQuantConfig& config = ConfigFor(which);
  const int64_t rows = 2048, cols = 4096;
  const torch::Tensor x = torch::randn({rows, cols});
  torch::Tensor out = torch::empty_like(x);
  std::vector<float> scales(NumScales(config, rows, cols));
  for (auto _ : state) {
    FakeQuantizeDynamic(x.data_ptr<float>(), rows, cols, config, 1.0f, out.data_ptr<float>(),
                        scales.data());
    benchmark::DoNotOptimize(out.data_ptr<float>());
  }
  state.SetItemsProcessed(state.iterations() * rows * cols);
  state.SetBytesProcessed(state.iterations() * rows * cols * 8);
}

void FakeQuantTorchOps(benchmark::State& state, int which) {
  const FakeQuantConfig& config = ConfigFor(which);
  const torch::Tensor x = torch::randn({2048, 4096});
  const torch::Tensor one = torch::tensor(1.0f);
  torch::NoGradGuard no_grad;
  for (auto _ : state) {
    auto out = FakeQuantizeDynamicSte(x, config, one);
    benchmark::DoNotOptimize(out->values.data_ptr<float>());
  }
  state.SetItemsProcessed(state.iterations() * x.numel());
  state.SetBytesProcessed(state.iterations() * x.numel() * 8);
}

void MseSearch(benchmark::State& state) {
  const FakeQuantConfig config{4, QuantGranularity::kPerGroup, 128};
  const int64_t rows = 64, cols = 4096;
  const torch::Tensor w = torch::randn({rows, cols}) * 0.02;
  std::vector<float> scales(NumScales(config, rows, cols));
  for (auto _ : state) {
    MseSearchScales(w.data_ptr<float>(), rows, cols, config, ShrinkSearch{}, scales.data());
    benchmark::DoNotOptimize(scales.data());
  }
  state.SetItemsProcessed(state.iterations() * rows * cols);
}

// Keeps items/s per benchmark name so the ratios can be printed after the run.
class RatioReporter : public benchmark::ConsoleReporter {
 public:
  void ReportRuns(const std::vector<Run>& runs) override {
    for (const Run& run : runs) {
      auto it = run.counters.find("items_per_second");
      if (it != run.counters.end()) rates_[run.benchmark_name()] = it->second.value;
    }
    ConsoleReporter::ReportRuns(runs);
  }
  double Rate(const std::string& name) const {
    auto it = rates_.find(name);
    return it == rates_.end() ? 0.0 : it->second;
  }

 private:
  std::map<std::string, double> rates_;
};

void PrintRatio(const RatioReporter& r, const std::string& what, const std::string& fast,
                const std::string& slow) {
  const double a = r.Rate(fast), b = r.Rate(slow);
  if (a > 0 && b > 0) {
    std::printf("%-34s %10.3g vs %10.3g elements/s  ratio %.1fx\n", what.c_str(), a, b, a / b);
  }
}

}  // namespace
}  // namespace quantd::kernels

int main(int argc, char** argv) {
  using namespace quantd::kernels;
  at::set_num_threads(1);
  for (int64_t n : {4096, 11008}) {
    benchmark::RegisterBenchmark(("fwht/" + std::to_string(n)).c_str(), FwhtKernel, n);
    benchmark::RegisterBenchmark(("dense_matmul/" + std::to_string(n)).c_str(), DenseMatmul, n);
  }
  const char* layouts[] = {"per_token_w8", "per_group128_w4"};
  for (int which : {0, 1}) {
    benchmark::RegisterBenchmark((std::string("fake_quant/") + layouts[which]).c_str(),
                                 FakeQuantKernel, which);
    benchmark::RegisterBenchmark((std::string("fake_quant_torch_ops/") + layouts[which]).c_str(),
                                 FakeQuantTorchOps, which);
  }
  benchmark::RegisterBenchmark("mse_search/per_group128_w4", MseSearch);
  benchmark::Initialize(&argc, argv);
  RatioReporter reporter;
  benchmark::RunSpecifiedBenchmarks(&reporter);
  std::printf("\nratios (single thread, %lld rows per transform call)\n",
              static_cast<long long>(kRows));
  for (const char* n : {"4096", "11008"}) {
    PrintRatio(reporter, std::string("hadamard ") + n + ": fwht / dense", std::string("fwht/") + n,
               std::string("dense_matmul/") + n);
  }
  for (const char* layout : layouts) {
    PrintRatio(reporter, std::string("fake quant ") + layout + ": kernel / torch ops",
               std::string("fake_quant/") + layout, std::string("fake_quant_torch_ops/") + layout);
  }
  benchmark::Shutdown();
  return 0;
}
