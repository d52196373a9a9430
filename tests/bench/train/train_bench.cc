// Steps/s of the two training phases against naive versions of the same steps, timed in the
// same run on stories260K (training_seqlen 256, batch 4):
//  * prefix training: TrainPrefix (cached window embeddings, blocks up to the last target
//    only) vs a step that re-embeds the ids and runs the full forward pass with logits;
//  * fine-tuning: FinetuneBlocks (cached FP / quantized block inputs, prefix KV computed once)
//    vs a step that prepends the prefix tokens, reruns the FP blocks 0..l for the target and
//    the quantized blocks 0..l-1 for the input, then trains block l.
//
//   train_bench [--threads T] [--steps S] [--rounds R]   (best of R interleaved rounds)
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "worker/eval/token_stream.h"
#include "worker/model/llama.h"
#include "worker/model/tokenizer.h"
#include "worker/train/finetune.h"
#include "worker/train/prefix_trainer.h"
#include "worker/train/ste_block.h"

namespace {

using namespace quantd;  // NOLINT: a benchmark program
using Clock = std::chrono::steady_clock;

constexpr int64_t kSeqlen = 256;
constexpr int64_t kBatch = 4;
constexpr int64_t kPrefixLen = 8;

std::string Data(const std::string& p) { return std::string(QUANTD_SHARED_DATA) + "/" + p; }

std::unique_ptr<model::LlamaModel> Load() {
  auto m = model::LlamaModel::Load(Data("models/stories260K"));
  if (!m.ok()) {
    std::fprintf(stderr, "%s\n", m.status().ToString().c_str());
    std::exit(1);
  }
  return std::move(m).value();
}

std::vector<std::vector<int32_t>> Windows(int64_t count) {
  auto tok = model::LoadTokenizer(Data("models/stories260K"));
  auto text = eval::ReadTextFile(Data("text/tinystories-valid-subset.txt"));
  auto ids = eval::BuildTokenStream(**tok, text->substr(0, 200000), eval::DocumentMode::kBlankLine);
  std::vector<std::vector<int32_t>> out;
  int64_t at = 0;
  for (int64_t i = 0; i < count; ++i) {
    if ((*ids)[at] == 1) ++at;
    out.emplace_back(ids->begin() + at, ids->begin() + at + kSeqlen);
    at += kSeqlen;
  }
  return out;
}

torch::Tensor Ids(const std::vector<std::vector<int32_t>>& w, int64_t first, int64_t n) {
  std::vector<int64_t> flat;
  for (int64_t i = first; i < first + n; ++i) flat.insert(flat.end(), w[i].begin(), w[i].end());
  return torch::tensor(flat, torch::kInt64).view({n, -1});
}

// Mean steps/s between the first and last loss point of each group (phase, block).
struct StepTimer {
  std::vector<Clock::time_point> stamps;
  std::vector<int> groups;
  void Mark(int group) {
    stamps.push_back(Clock::now());
    groups.push_back(group);
  }
  double StepsPerSecond() const {
    double steps = 0, seconds = 0;
    size_t begin = 0;
    for (size_t i = 1; i <= stamps.size(); ++i) {
      if (i == stamps.size() || groups[i] != groups[begin]) {
        steps += static_cast<double>(i - 1 - begin);
        seconds += std::chrono::duration<double>(stamps[i - 1] - stamps[begin]).count();
        begin = i;
      }
    }
    return seconds > 0 ? steps / seconds : 0;
  }
};

class BlockOutputs : public model::ActivationObserver {
 public:
  bool Wants(int, model::ActivationSite site) const override {
    return site == model::ActivationSite::kBlockOutput;
  }
  void Observe(int, model::ActivationSite, const torch::Tensor& x) override { outs.push_back(x); }
  std::vector<torch::Tensor> outs;
};

double NaivePrefixStepsPerSecond(model::LlamaModel& m,
                                 const std::vector<std::vector<int32_t>>& windows, int steps) {
  torch::Tensor prefix = m.embed_tokens.narrow(0, 400, kPrefixLen).clone().set_requires_grad(true);
  torch::optim::AdamW opt(std::vector<torch::Tensor>{prefix}, torch::optim::AdamWOptions(1e-3));
  train::PrefixLossOptions loss_options;
  Clock::time_point start;
  for (int s = 0; s <= steps; ++s) {
    if (s == 1) start = Clock::now();  // step 0 warms up
    const int64_t first = (s * kBatch) % static_cast<int64_t>(windows.size());
    const torch::Tensor embeds = m.Embed(Ids(windows, first, kBatch));
    BlockOutputs observer;
    model::ForwardRequest request;
    request.input_embeds =
        torch::cat({prefix.unsqueeze(0).expand({kBatch, kPrefixLen, prefix.size(1)}), embeds}, 1);
    request.observer = &observer;
    m.ForwardOrThrow(request);
    std::vector<torch::Tensor> layers;
    for (auto& h : observer.outs) layers.push_back(h.narrow(1, kPrefixLen, kSeqlen));
    opt.zero_grad();
    train::ComputePrefixLoss(layers, prefix, loss_options).total.backward();
    opt.step();
  }
  return steps / std::chrono::duration<double>(Clock::now() - start).count();
}

double NaiveFinetuneStepsPerSecond(const std::vector<std::vector<int32_t>>& windows,
                                   const std::vector<int64_t>& prefix_ids, int steps) {
  auto fp = Load();
  auto q = Load();
  const auto installer = train::MakeSteBlockInstaller(train::SteBlockOptions{});
  const int64_t p = static_cast<int64_t>(prefix_ids.size());
  const torch::Tensor prefix = torch::tensor(prefix_ids, torch::kInt64).view({1, p});
  double total_steps = 0, seconds = 0;
  for (int l = 0; l < static_cast<int>(q->blocks.size()); ++l) {
    auto block = installer(*q, l);
    auto params = (*block)->QuantParameters();
    for (auto& t : params) t.set_requires_grad(true);
    torch::optim::AdamW opt(params, torch::optim::AdamWOptions(5e-3));
    Clock::time_point start;
    for (int s = 0; s <= steps; ++s) {
      if (s == 1) start = Clock::now();
      const int64_t first = (s * kBatch) % static_cast<int64_t>(windows.size());
      const torch::Tensor ids =
          torch::cat({prefix.expand({kBatch, p}), Ids(windows, first, kBatch)}, 1);
      torch::Tensor target, input;
      {
        torch::NoGradGuard no_grad;
        target = fp->Embed(ids);
        for (int j = 0; j <= l; ++j) target = fp->RunBlock(j, target, 0, nullptr, nullptr, nullptr);
        input = q->Embed(ids);
        for (int j = 0; j < l; ++j) input = q->RunBlock(j, input, 0, nullptr, nullptr, nullptr);
      }
      const torch::Tensor out = q->RunBlock(l, input, 0, nullptr, nullptr, nullptr);
      opt.zero_grad();
      torch::mse_loss(out.narrow(1, p, kSeqlen), target.narrow(1, p, kSeqlen)).backward();
      opt.step();
    }
    seconds += std::chrono::duration<double>(Clock::now() - start).count();
    total_steps += steps;
    for (auto& t : params) t.set_requires_grad(false);
    (*block)->Finish();
  }
  return total_steps / seconds;
}

// One measurement of each of the four variants; returns {prefix, naive prefix, ft, naive ft}.
std::vector<double> Round(const std::vector<std::vector<int32_t>>& windows, int steps,
                          int64_t* peak_bytes, int64_t* peak_rss) {
  auto m = Load();
  train::PrefixTrainOptions po;
  po.prefix_len = kPrefixLen;
  po.batch_size = kBatch;
  po.epochs = static_cast<int>((steps + 3) / 4) + 1;
  StepTimer prefix_timer;
  train::TrainCallbacks pc;
  pc.on_loss = [&](const train::LossPoint& p) {
    if (p.split == "train") prefix_timer.Mark(0);
  };
  auto pr = train::TrainPrefix(*m, windows, {}, po, pc);
  if (!pr.ok()) {
    std::fprintf(stderr, "%s\n", pr.status().ToString().c_str());
    std::exit(1);
  }
  const double prefix_naive = NaivePrefixStepsPerSecond(*m, windows, steps);

  // Fine-tuning, W4 per channel, behind a prefix of kPrefixLen tokens.
  std::vector<int64_t> prefix_ids;
  for (int64_t i = 0; i + 1 < kPrefixLen; ++i) prefix_ids.push_back(400 + i);
  prefix_ids.push_back(1);
  auto fm = Load();
  model::KvCache kv;
  {
    torch::NoGradGuard no_grad;
    kv = *fm->BuildPrefixKv(torch::tensor(prefix_ids, torch::kInt64).view({1, kPrefixLen}));
  }
  train::FinetuneOptions fo;
  fo.batch_size = kBatch;
  fo.quant_lr = 5e-3;
  fo.weight_lr = 0;
  fo.epochs = static_cast<int>((steps + 3) / 4) + 1;
  StepTimer ft_timer;
  train::TrainCallbacks fc;
  fc.on_loss = [&](const train::LossPoint& p) {
    if (p.split == "train") ft_timer.Mark(p.block);
  };
  auto fr = train::FinetuneBlocks(*fm, &kv, windows, {}, train::MakeSteBlockInstaller({}), fo, fc);
  if (!fr.ok()) {
    std::fprintf(stderr, "%s\n", fr.status().ToString().c_str());
    std::exit(1);
  }
  *peak_bytes = fr->peak_training_bytes;
  *peak_rss = fr->peak_rss_bytes;
  const double ft_naive = NaiveFinetuneStepsPerSecond(windows, prefix_ids, steps);
  return {prefix_timer.StepsPerSecond(), prefix_naive, ft_timer.StepsPerSecond(), ft_naive};
}

}  // namespace

int main(int argc, char** argv) {
  int threads = 0, steps = 16, rounds = 3;
  for (int i = 1; i + 1 < argc; i += 2) {
    if (std::strcmp(argv[i], "--threads") == 0) threads = std::atoi(argv[i + 1]);
    if (std::strcmp(argv[i], "--steps") == 0) steps = std::atoi(argv[i + 1]);
    if (std::strcmp(argv[i], "--rounds") == 0) rounds = std::atoi(argv[i + 1]);
  }
  if (threads > 0) torch::set_num_threads(threads);
  const auto windows = Windows(kBatch * 4);
  std::printf(
      "stories260K, seqlen %ld, batch %ld, prefix %ld, %d torch threads, %d steps, "
      "best of %d interleaved rounds\n",
      kSeqlen, kBatch, kPrefixLen, torch::get_num_threads(), steps, rounds);
  std::vector<double> best(4, 0.0);
  int64_t peak_bytes = 0, peak_rss = 0;
  for (int r = 0; r < rounds; ++r) {
    const auto v = Round(windows, steps, &peak_bytes, &peak_rss);
    std::printf("round %d: prefix %.2f naive %.2f | fine-tune %.2f naive %.2f steps/s\n", r, v[0],
                v[1], v[2], v[3]);
    for (int i = 0; i < 4; ++i) best[i] = std::max(best[i], v[i]);
  }
  std::printf("prefix training : %8.2f steps/s   naive %8.2f steps/s   ratio %.2fx\n", best[0],
              best[1], best[0] / best[1]);
  std::printf("fine-tuning     : %8.2f steps/s   naive %8.2f steps/s   ratio %.2fx\n", best[2],
              best[3], best[2] / best[3]);
  std::printf(
      "fine-tuning peak training bytes %ld (activations + one block's state), "
      "peak RSS %ld bytes\n",
      peak_bytes, peak_rss);
  return 0;
}
