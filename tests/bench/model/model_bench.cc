// Forward-pass throughput of model::LlamaModel against a plain reference loop (one sequence
// at a time, one head at a time, K/V heads repeated, mask built per head) on the same weights,
// both timed in this run. Prints tokens/s and the ratio.
//
//   model_bench [--model DIR] [--seqlen N] [--repeats R] [--threads T]
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <functional>
#include <string>
#include <vector>

#include "worker/model/llama.h"

namespace {

using quantd::model::DenseLinear;
using quantd::model::LlamaModel;

torch::Tensor W(const std::shared_ptr<quantd::model::LinearLayer>& layer) {
  return dynamic_cast<DenseLinear&>(*layer).weight;
}

torch::Tensor PlainRmsNorm(const torch::Tensor& x, const torch::Tensor& w, double eps) {
  return w * (x / torch::sqrt(x.pow(2).mean(-1, true) + eps));
}

torch::Tensor PlainRope(const torch::Tensor& x, double theta) {  // x: [tokens, head_dim]
  const int64_t t = x.size(0), d = x.size(1);
  auto inv = 1.0 / torch::pow(theta, torch::arange(0, d, 2, torch::kFloat32) / double(d));
  auto ang = torch::outer(torch::arange(t, torch::kFloat32), inv);
  auto cos = torch::cat({ang, ang}, -1).cos(), sin = torch::cat({ang, ang}, -1).sin();
  auto rot = torch::cat({-x.narrow(1, d / 2, d / 2), x.narrow(1, 0, d / 2)}, 1);
  return x * cos + rot * sin;
}

// The reference: a direct transcription of the Llama equations, sequence by sequence.
torch::Tensor PlainForward(LlamaModel& m, const torch::Tensor& ids) {
  const auto& c = m.config();
  const int64_t hd = c.head_dim, rep = c.num_attention_heads / c.num_key_value_heads;
  std::vector<torch::Tensor> outputs;
  for (int64_t b = 0; b < ids.size(0); ++b) {
    auto h = m.embed_tokens.index_select(0, ids[b]);
    const int64_t t = h.size(0);
    auto mask = torch::full({t, t}, -INFINITY).triu(1);
    for (auto& block : m.blocks) {
      auto x = PlainRmsNorm(h, block.input_norm, c.rms_norm_eps);
      auto q = torch::matmul(x, W(block.q_proj).t());
      auto k = torch::matmul(x, W(block.k_proj).t()).view({t, -1, hd}).repeat_interleave(rep, 1);
      auto v = torch::matmul(x, W(block.v_proj).t()).view({t, -1, hd}).repeat_interleave(rep, 1);
      std::vector<torch::Tensor> heads;
      for (int64_t i = 0; i < c.num_attention_heads; ++i) {
        auto qi = PlainRope(q.narrow(1, i * hd, hd), c.rope_theta);
        auto ki = PlainRope(k.select(1, i), c.rope_theta);
        auto s = torch::matmul(qi, ki.t()) / std::sqrt(double(hd)) + mask;
        heads.push_back(torch::matmul(torch::softmax(s, -1), v.select(1, i)));
      }
      h = h + torch::matmul(torch::cat(heads, 1), W(block.o_proj).t());
      auto y = PlainRmsNorm(h, block.post_attention_norm, c.rms_norm_eps);
      auto g = torch::matmul(y, W(block.gate_proj).t());
      auto u = torch::matmul(y, W(block.up_proj).t());
      h = h + torch::matmul(g * torch::sigmoid(g) * u, W(block.down_proj).t());
    }
    outputs.push_back(
        torch::matmul(PlainRmsNorm(h, m.final_norm, c.rms_norm_eps), W(m.lm_head).t()));
  }
  return torch::stack(outputs);
}

torch::Tensor RuntimeForward(LlamaModel& m, const torch::Tensor& ids) {
  quantd::model::ForwardRequest request;
  request.input_ids = ids;
  auto result = m.Forward(request);
  if (!result.ok()) {
    std::fprintf(stderr, "forward failed: %s\n", std::string(result.status().message()).c_str());
    std::exit(1);
  }
  return result->logits;
}

// CPU seconds used by the whole process (all threads). On a shared machine this is steadier
// than wall time: it does not count time spent waiting for a core.
double CpuSeconds() {
  timespec ts;
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) + 1e-9 * static_cast<double>(ts.tv_nsec);
}

// Median CPU seconds of `repeats` timed calls of each function after one warm-up call each; the
// calls alternate (a, b, a, b, ...) so that load from other processes hits both alike.
std::pair<double, double> MedianSeconds(const std::function<void()>& a,
                                        const std::function<void()>& b, int repeats) {
  a();
  b();
  std::vector<double> ta, tb;
  auto time = [](const std::function<void()>& fn) {
    const double start = CpuSeconds();
    fn();
    return CpuSeconds() - start;
  };
  for (int i = 0; i < repeats; ++i) {
    ta.push_back(time(a));
    tb.push_back(time(b));
  }
  std::sort(ta.begin(), ta.end());
  std::sort(tb.begin(), tb.end());
  return {ta[ta.size() / 2], tb[tb.size() / 2]};
}

}  // namespace

int main(int argc, char** argv) {
  std::string model_dir = std::string(QUANTD_SHARED_DATA) + "/models/stories260K";
  int64_t seqlen = 256;
  int repeats = 15;
  int threads = 0;
  for (int i = 1; i + 1 < argc; i += 2) {
    if (!std::strcmp(argv[i], "--model")) model_dir = argv[i + 1];
    if (!std::strcmp(argv[i], "--seqlen")) seqlen = std::atoll(argv[i + 1]);
    if (!std::strcmp(argv[i], "--repeats")) repeats = std::atoi(argv[i + 1]);
    if (!std::strcmp(argv[i], "--threads")) threads = std::atoi(argv[i + 1]);
  }
  if (threads > 0) torch::set_num_threads(threads);
  auto loaded = LlamaModel::Load(model_dir);
  if (!loaded.ok()) {
    std::fprintf(stderr, "%s\n", std::string(loaded.status().message()).c_str());
    return 1;
  }
  LlamaModel& model = **loaded;
  torch::NoGradGuard no_grad;
  torch::manual_seed(0);
  std::printf("model %s, seqlen %ld, %d torch threads, median CPU time of %d alternating runs\n",
              model_dir.c_str(), static_cast<long>(seqlen), torch::get_num_threads(), repeats);
  std::printf("%-6s %18s %20s %8s %12s\n", "batch", "runtime tok/cpu-s", "reference tok/cpu-s",
              "ratio", "max |diff|");
  for (int64_t batch : {1, 8}) {
    auto ids = torch::randint(0, model.config().vocab_size, {batch, seqlen}, torch::kInt64);
    const double diff =
        (RuntimeForward(model, ids) - PlainForward(model, ids)).abs().max().item<double>();
    const auto [ours, plain] = MedianSeconds([&] { RuntimeForward(model, ids); },
                                             [&] { PlainForward(model, ids); }, repeats);
    const double tokens = static_cast<double>(batch * seqlen);
    std::printf("%-6ld %18.0f %20.0f %7.2fx %12.2e\n", static_cast<long>(batch), tokens / ours,
                tokens / plain, plain / ours, diff);
  }
  return 0;
}
