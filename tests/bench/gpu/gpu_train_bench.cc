// Speed of the two training phases on a real device, for projecting a full job (issue 10):
// a model folder (e.g. the Llama-2-7B-shaped random model of scripts/gpu/make_random_llama.py)
// is loaded onto --device in --dtype, then timed on random token windows:
//   forward   : tokens/s of a no-grad forward of `batch` windows (the baseline the others
//               are read against: a training step costs a few forwards);
//   streamed  : the same forward on a second copy whose last --streamed_blocks blocks (default:
//               all) live in pinned host memory and are streamed (resources.max_memory);
//   prefix    : TrainPrefix steps/s (P embeddings, `batch` windows per step, all layers), then
//               again with the block-wise backward that streamed models use;
//   fine-tune : FinetuneBlocks steps/s over the first --blocks blocks (W4 per channel with
//               4-bit dynamic inputs through the STE installer, `batch` windows per step).
// Steps/s come from the times between consecutive loss points (each reads its loss back, so
// the device is synchronised there). Prints a table; exit 1 on any failure.
//
//   gpu_train_bench --model DIR [--device cuda] [--dtype bfloat16] [--seqlen 2048]
//                   [--batch 1] [--windows 8] [--prefix_len 8] [--blocks 2]
//                   [--streamed_blocks N]
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "worker/model/device_choice.h"
#include "worker/model/llama.h"
#include "worker/pipeline/job_device.h"
#include "worker/train/finetune.h"
#include "worker/train/prefix_trainer.h"
#include "worker/train/ste_block.h"

namespace {

using namespace quantd;  // NOLINT: a benchmark program
using Clock = std::chrono::steady_clock;

template <typename T>
T OrExit(absl::StatusOr<T> value) {
  if (!value.ok()) {
    std::fprintf(stderr, "gpu_train_bench: %s\n", value.status().ToString().c_str());
    std::exit(1);
  }
  return *std::move(value);
}

// Mean steps/s between consecutive "train" loss points of the same group.
struct StepClock {
  int group = -1;
  Clock::time_point last;
  double seconds = 0;
  int64_t steps = 0;
  void Mark(int g) {
    const auto now = Clock::now();
    if (g == group) {
      seconds += std::chrono::duration<double>(now - last).count();
      ++steps;
    }
    group = g;
    last = now;
  }
  double PerSecond() const { return seconds > 0 ? steps / seconds : 0; }
};

// Tokens/s of a no-grad forward of `request` (one warm-up, then the mean of five).
double ForwardTokensPerSecond(model::LlamaModel& m, const model::ForwardRequest& request) {
  torch::NoGradGuard no_grad;
  m.ForwardOrThrow(request);  // warm-up
  constexpr int kRepeats = 5;
  const auto start = Clock::now();
  torch::Tensor last;
  for (int r = 0; r < kRepeats; ++r) last = m.ForwardOrThrow(request).hidden;
  (void)last.sum().item<double>();  // synchronise
  const double s = std::chrono::duration<double>(Clock::now() - start).count();
  return kRepeats * request.input_ids.numel() / s;
}

}  // namespace

int main(int argc, char** argv) {
  std::string model_dir, device_name = "cuda", dtype_name = "bfloat16";
  int64_t seqlen = 2048, batch = 1, windows = 8, prefix_len = 8, blocks = 2, streamed = -1;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string flag = argv[i];
    const char* value = argv[i + 1];
    if (flag == "--model") model_dir = value;
    if (flag == "--device") device_name = value;
    if (flag == "--dtype") dtype_name = value;
    if (flag == "--seqlen") seqlen = std::atoll(value);
    if (flag == "--batch") batch = std::atoll(value);
    if (flag == "--windows") windows = std::atoll(value);
    if (flag == "--prefix_len") prefix_len = std::atoll(value);
    if (flag == "--blocks") blocks = std::atoll(value);
    if (flag == "--streamed_blocks") streamed = std::atoll(value);
  }
  if (model_dir.empty()) {
    std::fprintf(stderr, "usage: gpu_train_bench --model DIR [--device cuda] ...\n");
    return 64;
  }
  model::LoadOptions load;
  load.device = OrExit(model::ChooseDevice(device_name));
  load.dtype = dtype_name == "float32"   ? torch::kFloat32
               : dtype_name == "float16" ? torch::kFloat16
                                         : torch::kBFloat16;
  const auto load_start = Clock::now();
  auto m = OrExit(model::LlamaModel::Load(model_dir, load));
  const double load_s = std::chrono::duration<double>(Clock::now() - load_start).count();
  const auto& c = m->config();
  std::printf(
      "model %s: %ld layers, hidden %ld, intermediate %ld, vocab %ld, %s on %s "
      "(loaded in %.1f s)\n",
      model_dir.c_str(), c.num_hidden_layers, c.hidden_size, c.intermediate_size, c.vocab_size,
      dtype_name.c_str(), load.device.str().c_str(), load_s);

  std::mt19937 rng(42);
  std::uniform_int_distribution<int32_t> token(3, static_cast<int32_t>(c.vocab_size) - 1);
  std::vector<std::vector<int32_t>> data(windows, std::vector<int32_t>(seqlen));
  for (auto& w : data)
    for (auto& t : w) t = token(rng);

  // Forward baseline, then the same on a copy with streamed blocks.
  model::ForwardRequest request;
  {
    std::vector<int64_t> flat;
    for (int64_t b = 0; b < batch; ++b) flat.insert(flat.end(), data[b].begin(), data[b].end());
    request.input_ids = torch::tensor(flat, torch::kInt64).view({batch, seqlen});
    request.logits = model::LogitsMode::kNone;
  }
  const double forward_tokens_per_s = ForwardTokensPerSecond(*m, request);
  double streamed_tokens_per_s = 0;
  {
    model::LoadOptions streamed_load = load;
    streamed_load.streamed_blocks = static_cast<int>(streamed < 0 ? c.num_hidden_layers : streamed);
    auto copy = OrExit(model::LlamaModel::Load(model_dir, streamed_load));
    streamed = copy->streamed_blocks();
    streamed_tokens_per_s = ForwardTokensPerSecond(*copy, request);
  }

  // Prefix training.
  train::PrefixTrainOptions prefix_options;
  prefix_options.prefix_len = prefix_len;
  prefix_options.batch_size = batch;
  prefix_options.epochs = 1;
  StepClock prefix_clock;
  train::TrainCallbacks prefix_callbacks;
  prefix_callbacks.on_loss = [&](const train::LossPoint& p) {
    if (p.split == "train") prefix_clock.Mark(0);
  };
  const auto prefix = OrExit(train::TrainPrefix(*m, data, {}, prefix_options, prefix_callbacks));
  StepClock blockwise_clock;
  {
    train::PrefixTrainOptions blockwise = prefix_options;
    blockwise.blockwise_backward = true;
    train::TrainCallbacks callbacks;
    callbacks.on_loss = [&](const train::LossPoint& p) {
      if (p.split == "train") blockwise_clock.Mark(0);
    };
    OrExit(train::TrainPrefix(*m, data, {}, blockwise, callbacks));
  }

  // Fine-tuning of the first `blocks` blocks behind a prefix KV cache of P tokens.
  std::vector<int64_t> prefix_ids(prefix.nearest_ids.begin(), prefix.nearest_ids.end());
  model::KvCache kv;
  {
    torch::NoGradGuard no_grad;
    kv = OrExit(m->BuildPrefixKv(torch::tensor(prefix_ids, torch::kInt64)
                                     .view({1, static_cast<int64_t>(prefix_ids.size())})));
  }
  train::SteBlockOptions ste;
  ste.wbits = 4;
  ste.input_bits = 4;
  ste.input_dynamic = true;  // static scales need a calibration pass; the step cost is alike
  train::FinetuneOptions finetune_options;
  finetune_options.epochs = 1;
  finetune_options.batch_size = batch;
  finetune_options.weight_lr = 0;
  StepClock finetune_clock;
  train::TrainCallbacks finetune_callbacks;
  int last_block = 0;
  finetune_callbacks.on_loss = [&](const train::LossPoint& p) {
    if (p.split == "train") finetune_clock.Mark(p.block);
    last_block = p.block;
  };
  // The first `blocks` blocks are timed; the run is stopped (CANCELLED) once the next begins.
  finetune_callbacks.cancelled = [&] { return last_block >= blocks; };
  finetune_callbacks.on_log = [](const std::string& line) { std::printf("  %s\n", line.c_str()); };
  int64_t peak_training_bytes = 0;
  {
    auto finetune = train::FinetuneBlocks(*m, &kv, data, {}, train::MakeSteBlockInstaller(ste),
                                          finetune_options, finetune_callbacks);
    if (finetune.ok()) {
      peak_training_bytes = finetune->peak_training_bytes;
    } else if (finetune.status().code() != absl::StatusCode::kCancelled) {
      std::fprintf(stderr, "gpu_train_bench: %s\n", finetune.status().ToString().c_str());
      return 1;
    }
  }

  std::printf("seqlen %ld, batch %ld, %ld windows, prefix %ld\n", seqlen, batch, windows,
              prefix_len);
  std::printf("forward (no grad)   : %10.0f tokens/s\n", forward_tokens_per_s);
  std::printf("forward, %ld streamed: %10.0f tokens/s  (%.3f of resident; %.2f GiB per block)\n",
              streamed, streamed_tokens_per_s, streamed_tokens_per_s / forward_tokens_per_s,
              pipeline::BlockBytes(c, load.dtype) / (1024.0 * 1024.0 * 1024.0));
  std::printf("prefix training     : %10.3f steps/s  (%ld steps; %.0f tokens/s)\n",
              prefix_clock.PerSecond(), prefix_clock.steps,
              prefix_clock.PerSecond() * batch * seqlen);
  std::printf("  block-wise backward: %8.3f steps/s  (%.3f of the whole-model backward)\n",
              blockwise_clock.PerSecond(), blockwise_clock.PerSecond() / prefix_clock.PerSecond());
  std::printf("block fine-tuning   : %10.3f steps/s  (%ld steps over %ld blocks; %.0f tokens/s)\n",
              finetune_clock.PerSecond(), finetune_clock.steps, blocks,
              finetune_clock.PerSecond() * batch * seqlen);
  std::printf("fine-tuning peak training bytes %.2f GiB (0: run stopped before the end)\n",
              peak_training_bytes / (1024.0 * 1024.0 * 1024.0));
  return 0;
}
