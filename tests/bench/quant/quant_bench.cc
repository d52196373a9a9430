// quant_bench: PrefixQuant on stories260K and its planted-outlier variant.
//   quant_bench table [--windows N] [--calib N] [--only MODEL]   perplexity table: W8A8KV8,
//       W4A8KV4, W4A4KV4 (static) x fp/rtn/rotation/prefixquant x both models, via RunJob
//   quant_bench training [--windows N] [--calib N] [--val N] [--prefix-epochs N] [--epochs N]
//                        [--loss-site block_output|down_proj_input]
//       W4A4KV4 static on the outlier variant: no prefix / detected / trained-discrete /
//       trained-continuous prefix x fine-tuning off/on (one job per prefix: the job reports the
//       calibrated model before fine-tuning and the fine-tuned one), via RunJob
//   quant_bench phases      wall time of each phase of one RunJob (W4A4KV4, prefixquant)
//   quant_bench hadamard    online Hadamard transform vs dense matmul with the same matrix
//   quant_bench one --model DIR --w B --a B --kv B [--mode static|dynamic] [--compare v]...
// Shared data from QUANTD_SHARED_DATA; the variant is written under QUANTD_BINARY_DIR.
#include <chrono>
#include <cstdio>
#include <map>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "kernels/hadamard.h"
#include "kernels/hadamard_torch.h"
#include "proto/common/args.h"
#include "worker/pipeline/run_job.h"
#include "worker/quant/outlier_variant.h"

namespace quantd {
namespace {

using Clock = std::chrono::steady_clock;

std::string Shared(const std::string& relative) {
  return std::string(QUANTD_SHARED_DATA) + "/" + relative;
}

class TimingSink : public EventSink {
 public:
  absl::Status Emit(const v1::JobEvent& event) override {
    const auto now = Clock::now();
    if (event.has_phase_change()) {
      Close(now);
      current_ = v1::Phase_Name(event.phase_change().phase());
      since_ = now;
      if (verbose)
        std::printf("  phase %s: %s\n", current_.c_str(), event.phase_change().detail().c_str());
    }
    if (event.has_log() && verbose) {
      std::printf("  %s: %s\n", event.log().level().c_str(), event.log().message().c_str());
    }
    return absl::OkStatus();
  }
  void Close(Clock::time_point now) {
    if (!current_.empty()) seconds[current_] += std::chrono::duration<double>(now - since_).count();
  }
  std::map<std::string, double> seconds;
  bool verbose = false;

 private:
  std::string current_;
  Clock::time_point since_;
};

v1::JobSpec Spec(const std::string& model, int w, int a, int kv, bool dynamic, int windows,
                 int calib) {
  v1::JobSpec spec;
  spec.mutable_model()->set_path(model);
  auto* c = spec.mutable_calibration();
  c->set_dataset_path(Shared("text/tinystories-valid-subset.txt"));
  c->set_documents("blank-line");
  c->set_train_size(calib);
  c->set_val_size(0);
  c->set_training_seqlen(256);
  c->set_seed(42);
  auto* q = spec.mutable_quant();
  q->set_wbits(w);
  q->set_w_group_size(-1);
  q->set_input_bits(a);
  q->set_input_mode(dynamic ? v1::QUANT_MODE_DYNAMIC : v1::QUANT_MODE_STATIC);
  q->set_k_bits(kv);
  q->set_v_bits(kv);
  q->set_kv_group_size(8);
  q->set_kv_mode(dynamic ? v1::QUANT_MODE_DYNAMIC : v1::QUANT_MODE_STATIC);
  q->set_mse_init(true);
  spec.mutable_rotation()->set_pre_rotate(true);
  spec.mutable_rotation()->set_down_online_had(true);
  spec.mutable_rotation()->set_qk_online_had(true);
  spec.mutable_prefix()->set_enabled(true);
  auto* e = spec.mutable_eval();
  e->add_ppl_datasets(Shared("text/tinystories-valid-subset.txt"));
  e->set_ppl_seqlen(256);
  e->set_ppl_max_windows(windows);
  return spec;
}

std::string Variant() {
  const std::string dir = std::string(QUANTD_BINARY_DIR) + "/tests/bench/quant/outlier-variant";
  quant::OutlierVariantOptions options;
  options.calibration_text = Shared("text/tinystories-valid-subset.txt");
  auto status = quant::WriteOutlierVariant(Shared("models/stories260K"), dir, options);
  if (!status.ok()) std::fprintf(stderr, "variant: %s\n", status.ToString().c_str());
  return dir;
}

pipeline::RunJobOutcome Run(const v1::JobSpec& spec, TimingSink& sink) {
  CancellationToken cancel;
  auto outcome = pipeline::RunJob(spec, {}, sink, cancel);
  sink.Close(Clock::now());
  if (!outcome.status.ok())
    std::fprintf(stderr, "job failed: %s\n", outcome.status.ToString().c_str());
  return outcome;
}

int Table(const Args& args) {
  const int windows = std::stoi(args.Get("windows", "40"));
  const int calib = std::stoi(args.Get("calib", "32"));
  std::vector<std::pair<std::string, std::string>> models = {
      {"stories260K", Shared("models/stories260K")}, {"outlier-variant", Variant()}};
  const std::string key = "ppl/tinystories-valid-subset.txt/";
  std::printf(
      "TinyStories subset, %d windows x 256 tokens, %d calibration windows, static "
      "activations and KV (per tensor / per head), per-channel weights with mse_init\n",
      windows, calib);
  std::printf(
      "| model | bits | fp | fp + prefix | rtn | rotation | prefixquant | prefix |\n"
      "|---|---|---|---|---|---|---|---|\n");
  for (const auto& [name, dir] : models) {
    if (args.Has("only") && args.Get("only") != name) continue;
    for (auto [w, a, kv] : {std::tuple{8, 8, 8}, {4, 8, 4}, {4, 4, 4}}) {
      auto spec = Spec(dir, w, a, kv, false, windows, calib);
      for (const char* v : {"rtn", "rotation"}) spec.mutable_eval()->add_compare(v);
      TimingSink sink;
      auto outcome = Run(spec, sink);
      if (!outcome.status.ok()) return 1;
      const auto& m = outcome.result.metrics();
      std::printf("| %s | W%dA%dKV%d | %.3f | %.3f | %.3f | %.3f | %.3f | %s |\n", name.c_str(), w,
                  a, kv, m.at(key + "fp"), m.at(key + "fp_prefixed"), m.at(key + "rtn"),
                  m.at(key + "rotation"), m.at(key + "quantized"),
                  outcome.result.prefix_text().c_str());
      std::fflush(stdout);
    }
  }
  return 0;
}

int TrainingTable(const Args& args) {
  const int windows = std::stoi(args.Get("windows", "40"));
  const int calib = std::stoi(args.Get("calib", "32"));
  const std::string key = "ppl/tinystories-valid-subset.txt/";
  const std::string variant = Variant();
  std::printf(
      "outlier variant of stories260K, W4A4KV4 static (per-tensor activations, per-head KV groups "
      "of 8, per-channel weights with mse_init), rotation R1-R4; %d calibration windows x 256 "
      "(+%s val), prefix: %s epochs lr 1e-2 loss at %s; fine-tuning: %s epochs, quant_lr 5e-3, "
      "weight_lr "
      "1e-3, batch 4; perplexity on %d TinyStories windows x 256\n",
      calib, args.Get("val", "8").c_str(), args.Get("prefix-epochs", "10").c_str(),
      args.Get("loss-site", "block_output").c_str(), args.Get("epochs", "5").c_str(), windows);
  std::printf(
      "| prefix | fp | fine-tune off | fine-tune on | prefix tokens | prefix loss | max down_proj "
      "input: detected / trained | train s |\n"
      "|---|---|---|---|---|---|---|---|\n");
  for (const char* kind : {"none", "detected", "trained-discrete", "trained-continuous"}) {
    auto spec = Spec(variant, 4, 4, 4, false, windows, calib);
    spec.mutable_calibration()->set_val_size(std::stoi(args.Get("val", "8")));
    auto* prefix = spec.mutable_prefix();
    prefix->set_enabled(std::string(kind) != "none");
    prefix->set_trainable(std::string(kind).rfind("trained", 0) == 0);
    prefix->set_mode(std::string(kind) == "trained-continuous" ? v1::PREFIX_MODE_CONTINUOUS
                                                               : v1::PREFIX_MODE_DISCRETE);
    prefix->set_epochs(std::stoi(args.Get("prefix-epochs", "10")));
    prefix->set_lr(1e-2);
    prefix->set_loss_site(args.Get("loss-site", "block_output"));
    auto* training = spec.mutable_training();
    training->set_epochs(std::stoi(args.Get("epochs", "5")));
    training->set_quant_lr(5e-3);
    training->set_weight_lr(1e-3);
    training->set_batch_size(4);
    TimingSink sink;
    auto outcome = Run(spec, sink);
    if (!outcome.status.ok()) return 1;
    const auto& m = outcome.result.metrics();
    const double train_s = sink.seconds["PHASE_TRAIN_PREFIX"] + sink.seconds["PHASE_FINETUNE"];
    std::string loss = "-";
    if (m.count("prefix/best_loss")) {
      loss = absl::StrCat(m.at("prefix/initial_loss"), " -> ", m.at("prefix/best_loss"));
    }
    std::string max = "-";
    if (m.count("prefix/max_down_proj_input/trained")) {
      max = absl::StrCat(m.at("prefix/max_down_proj_input/detected"), " / ",
                         m.at("prefix/max_down_proj_input/trained"));
    }
    std::printf("| %s | %.3f | %.3f | %.3f | %s | %s | %s | %.1f |\n", kind, m.at(key + "fp"),
                m.at(key + "quantized_before_finetune"), m.at(key + "quantized"),
                outcome.result.prefix_text().c_str(), loss.c_str(), max.c_str(), train_s);
    std::fflush(stdout);
  }
  return 0;
}

int One(const Args& args) {
  auto spec =
      Spec(args.Get("model"), std::stoi(args.Get("w", "16")), std::stoi(args.Get("a", "16")),
           std::stoi(args.Get("kv", "16")), args.Get("mode", "static") == "dynamic",
           std::stoi(args.Get("windows", "16")), std::stoi(args.Get("calib", "8")));
  if (args.Has("no-rotate")) spec.mutable_rotation()->Clear();
  if (args.Has("no-prefix")) spec.mutable_prefix()->set_enabled(false);
  if (args.Has("no-r4")) spec.mutable_rotation()->set_down_online_had(false);
  if (args.Has("no-r3")) spec.mutable_rotation()->set_qk_online_had(false);
  for (const auto& v : args.GetAll("compare")) spec.mutable_eval()->add_compare(v);
  TimingSink sink;
  sink.verbose = true;
  auto outcome = Run(spec, sink);
  for (const auto& [k, v] : outcome.result.metrics()) std::printf("%s = %.4f\n", k.c_str(), v);
  return outcome.status.ok() ? 0 : 1;
}

int Phases(const Args& args) {
  auto spec = Spec(Shared("models/stories260K"), 4, 4, 4, false,
                   std::stoi(args.Get("windows", "40")), std::stoi(args.Get("calib", "32")));
  TimingSink sink;
  const auto start = Clock::now();
  auto outcome = Run(spec, sink);
  const double total = std::chrono::duration<double>(Clock::now() - start).count();
  std::printf("RunJob on stories260K, W4A4KV4 static, rotation + prefix, %s windows: %.2f s\n",
              args.Get("windows", "40").c_str(), total);
  for (const auto& [phase, s] : sink.seconds) std::printf("  %-28s %8.3f s\n", phase.c_str(), s);
  return outcome.status.ok() ? 0 : 1;
}

int HadamardBench() {
  torch::NoGradGuard no_grad;
  std::printf(
      "| n | construction | tokens | FWHT-based (Melem/s) | dense matmul (Melem/s) | speed-up |\n");
  std::printf("|---|---|---|---|---|---|\n");
  for (int64_t n : {172, 64, 4096, 11008, 14336}) {
    const auto factors = kernels::FactorHadamard(n);
    const int64_t tokens = std::max<int64_t>(8, (1 << 22) / n);
    auto x = torch::randn({tokens, n});
    auto dense = kernels::HadamardMatrix(factors, true);
    auto time = [&](auto&& f) {
      f();  // warm-up
      int reps = 0;
      const auto start = Clock::now();
      double elapsed = 0;
      while (elapsed < 0.5) {
        f();
        ++reps;
        elapsed = std::chrono::duration<double>(Clock::now() - start).count();
      }
      return static_cast<double>(tokens * n) * reps / elapsed / 1e6;
    };
    const double fast = time([&] { (void)kernels::HadamardTransform(x, factors, true); });
    const double slow = time([&] { (void)torch::matmul(x, dense.t()); });
    std::printf("| %ld | %s | %ld | %.1f | %.1f | %.2fx |\n", n, factors.construction.c_str(),
                tokens, fast, slow, fast / slow);
  }
  return 0;
}

}  // namespace
}  // namespace quantd

int main(int argc, char** argv) {
  std::vector<std::string> argv_list(argv + 1, argv + argc);
  auto args = quantd::Args::Parse(
      argv_list,
      {"windows", "calib", "only", "model", "w", "a", "kv", "mode", "compare", "no-rotate",
       "no-prefix", "no-r4", "no-r3", "val", "prefix-epochs", "epochs", "loss-site"},
      {"no-rotate", "no-prefix", "no-r4", "no-r3"});
  if (!args.ok() || args->positional().empty()) {
    std::fprintf(stderr, "usage: quant_bench table|training|phases|hadamard|one [flags]\n");
    return 2;
  }
  const std::string command = args->positional()[0];
  if (command == "table") return quantd::Table(*args);
  if (command == "training") return quantd::TrainingTable(*args);
  if (command == "phases") return quantd::Phases(*args);
  if (command == "hadamard") return quantd::HadamardBench();
  if (command == "one") return quantd::One(*args);
  std::fprintf(stderr, "unknown command %s\n", command.c_str());
  return 2;
}
