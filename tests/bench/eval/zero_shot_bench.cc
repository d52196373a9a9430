// Zero-shot scoring throughput: the TinyStories cloze task (tests/common/story_cloze.h) scored
// with one request per forward pass (the baseline) and in batches, on the same model in this
// run. Prints requests/s, the ratio to the baseline, the accuracy, and how far each batch
// size's log-likelihoods are from the baseline's (padding changes only the order of sums).
//
//   zero_shot_bench [--model DIR] [--examples N] [--device cpu|cuda] [--batches 1,16,64]
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_split.h"
#include "tests/common/story_cloze.h"
#include "worker/eval/multiple_choice.h"
#include "worker/eval/task_file.h"
#include "worker/model/llama.h"
#include "worker/model/tokenizer.h"

int main(int argc, char** argv) {
  std::string model_dir = std::string(QUANTD_SHARED_DATA) + "/models/stories260K";
  std::string device = "cpu";
  std::string batches = "1,16,64";
  int examples = 200;
  for (int i = 1; i + 1 < argc; i += 2) {
    if (!std::strcmp(argv[i], "--model")) model_dir = argv[i + 1];
    if (!std::strcmp(argv[i], "--device")) device = argv[i + 1];
    if (!std::strcmp(argv[i], "--batches")) batches = argv[i + 1];
    if (!std::strcmp(argv[i], "--examples")) examples = std::atoi(argv[i + 1]);
  }
  const std::string task_path = "/tmp/zero_shot_bench_cloze.jsonl";
  examples = quantd::testing::WriteStoryCloze(
      std::string(QUANTD_SHARED_DATA) + "/text/tinystories-valid-subset.txt", task_path, examples);
  quantd::model::LoadOptions options;
  options.device = torch::Device(device);
  auto model = quantd::model::LlamaModel::Load(model_dir, options);
  auto tokenizer = quantd::model::LoadTokenizer(model_dir);
  auto file = quantd::eval::ReadTaskFile(task_path, "cloze");
  if (!model.ok() || !tokenizer.ok() || !file.ok()) {
    std::fprintf(stderr, "setup failed: %s %s %s\n", model.status().ToString().c_str(),
                 tokenizer.status().ToString().c_str(), file.status().ToString().c_str());
    return 1;
  }
  auto task = quantd::eval::TokenizeTask(**tokenizer, *file);
  if (!task.ok()) return 1;
  std::printf("zero-shot scoring, %s on %s: %d examples x 4 choices\n", model_dir.c_str(),
              device.c_str(), examples);
  double baseline = 0;
  std::vector<std::vector<double>> baseline_scores;
  for (absl::string_view text : absl::StrSplit(batches, ',')) {
    int batch = 1;
    if (!absl::SimpleAtoi(text, &batch) || batch < 1) return 2;
    quantd::eval::MultipleChoiceOptions scoring;
    scoring.batch_size = batch;
    scoring.bos_id = (*tokenizer)->bos_id();
    (void)quantd::eval::EvaluateMultipleChoice(**model, *task, scoring);  // warm-up
    const auto start = std::chrono::steady_clock::now();
    auto result = quantd::eval::EvaluateMultipleChoice(**model, *task, scoring);
    const double seconds =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    if (!result.ok()) {
      std::fprintf(stderr, "%s\n", result.status().ToString().c_str());
      return 1;
    }
    const double rate = 4.0 * examples / seconds;
    if (baseline == 0) {
      baseline = rate;
      baseline_scores = result->loglikelihoods;
    }
    double max_difference = 0;
    for (size_t e = 0; e < baseline_scores.size(); ++e) {
      for (size_t c = 0; c < baseline_scores[e].size(); ++c) {
        max_difference = std::max(max_difference,
                                  std::abs(result->loglikelihoods[e][c] - baseline_scores[e][c]));
      }
    }
    std::printf("batch %3d: %9.1f requests/s  %5.2fx the first  acc %.4f  max |dlogp| %.2e\n",
                batch, rate, rate / baseline, result->accuracy, max_difference);
  }
  std::remove(task_path.c_str());
  return 0;
}
