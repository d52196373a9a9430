// The generate, perplexity and zero-shot sub-commands, called as functions and through the real
// quantd-worker executable, on the shared stories260K model.
#include "worker/cli/commands.h"

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "tests/common/overflowing_model.h"
#include "tests/common/story_cloze.h"

namespace quantd::cli {
namespace {

using ::testing::HasSubstr;

const std::string kModel = std::string(QUANTD_SHARED_DATA) + "/models/stories260K";
const std::string kTiny = std::string(QUANTD_SHARED_DATA) + "/text/tinystories-valid-subset.txt";
const std::string kWiki = std::string(QUANTD_SHARED_DATA) + "/text/wikitext2-test.raw";

struct Run {
  int code;
  std::string out;
  std::string err;
};

Run Call(int (*command)(const std::vector<std::string>&, std::ostream&, std::ostream&),
         const std::vector<std::string>& args) {
  std::ostringstream out, err;
  const int code = command(args, out, err);
  return {code, out.str(), err.str()};
}

// Runs the executable and captures stdout and the exit code.
Run Exec(const std::string& args) {
  const std::string command =
      std::string(QUANTD_BINARY_DIR) + "/worker/quantd-worker " + args + " 2>/dev/null";
  FILE* pipe = popen(command.c_str(), "r");
  std::string out;
  char buffer[4096];
  size_t n;
  while (pipe != nullptr && (n = fread(buffer, 1, sizeof(buffer), pipe)) > 0) out.append(buffer, n);
  const int status = pipe != nullptr ? pclose(pipe) : -1;
  return {WIFEXITED(status) ? WEXITSTATUS(status) : -1, out, ""};
}

TEST(GenerateCommandTest, GreedyFromBosAsJson) {
  auto run = Call(RunGenerate, {"--model", kModel, "--max-tokens", "40", "--output", "json"});
  ASSERT_EQ(run.code, 0) << run.err;
  auto j = nlohmann::json::parse(run.out);
  EXPECT_EQ(j["prompt_ids"], nlohmann::json::array({1}));
  const std::vector<int64_t> ids = j["generated_ids"].get<std::vector<int64_t>>();
  ASSERT_EQ(ids.size(), 40u);
  EXPECT_EQ(ids.front(), 403);
  EXPECT_EQ(ids.back(), 352);
  EXPECT_THAT(j["text"].get<std::string>(), HasSubstr("Once upon a time"));
  // Without --device the command takes the first visible GPU, as a job does, else the CPU.
  EXPECT_EQ(j["device"], torch::cuda::is_available() ? "cuda:0" : "cpu");
}

TEST(GenerateCommandTest, PromptAndTextOutput) {
  auto run = Call(RunGenerate, {"--model", kModel, "--prompt", "Once upon", "--max-tokens=5"});
  ASSERT_EQ(run.code, 0) << run.err;
  EXPECT_THAT(run.out, HasSubstr("prompt ids: 1 403 407\n"));
  EXPECT_THAT(run.out, HasSubstr("text: Once upon"));
}

TEST(GenerateCommandTest, UsageAndLoadErrors) {
  auto missing = Call(RunGenerate, {"--max-tokens", "3"});
  EXPECT_EQ(missing.code, 2);
  EXPECT_THAT(missing.err, HasSubstr("--model is required"));
  EXPECT_EQ(Call(RunGenerate, {"--model", kModel, "--output", "yaml"}).code, 2);
  EXPECT_EQ(Call(RunGenerate, {"--model", kModel, "--dtype", "int8"}).code, 2);
  auto bad_dir = Call(RunGenerate, {"--model", "/nonexistent/model"});
  EXPECT_EQ(bad_dir.code, 1);
  EXPECT_THAT(bad_dir.err, HasSubstr("/nonexistent/model"));
}

// inspect takes the folder as its argument (or --model): without one it says what it expects.
TEST(InspectCommandTest, AMissingFolderIsAUsageError) {
  auto run = Call(RunInspect, {});
  EXPECT_EQ(run.code, 2);
  EXPECT_THAT(run.err, HasSubstr("expected EXPORT_DIR (or --model DIR)"));
  EXPECT_THAT(run.err, HasSubstr("usage: quantd-worker inspect EXPORT_DIR|--model DIR"));
}

// --help is the first thing a user tries: every command answers it with its usage and exit 0.
TEST(CommandHelpTest, EveryCommandAnswersHelp) {
  for (const char* command : {"generate", "perplexity", "zero-shot", "inspect"}) {
    auto help = Exec(std::string(command) + " --help");
    EXPECT_EQ(help.code, 0) << command;
    EXPECT_THAT(help.out, HasSubstr(std::string("usage: quantd-worker ") + command)) << command;
  }
  for (const char* command : {"run", "connect"}) {
    auto help = Exec(std::string(command) + " --help");
    EXPECT_EQ(help.code, 0) << command;
    EXPECT_THAT(help.out, HasSubstr("run --spec JOB.yaml")) << command;
  }
}

TEST(PerplexityCommandTest, TinyStoriesBlankLineDocuments) {
  auto run = Call(RunPerplexity,
                  {"--model", kModel, "--text", kTiny, "--seqlen", "256", "--max-windows", "40",
                   "--documents", "blank-line", "--batch-size", "8", "--output", "json"});
  ASSERT_EQ(run.code, 0) << run.err;
  auto j = nlohmann::json::parse(run.out);
  EXPECT_EQ(j["windows"], 40);
  EXPECT_EQ(j["predictions"], 10200);
  EXPECT_NEAR(j["perplexity"].get<double>(), 4.117, 0.002);
}

TEST(PerplexityCommandTest, ExecutableWikiTextWholeFile) {
  auto run = Exec("perplexity --model " + kModel + " --text " + kWiki +
                  " --seqlen 256 --max-windows 40 --batch-size 8 --output json");
  ASSERT_EQ(run.code, 0) << run.out;
  auto j = nlohmann::json::parse(run.out);
  EXPECT_EQ(j["windows"], 40);
  EXPECT_NEAR(j["perplexity"].get<double>(), 99.43, 0.05);

  auto text = Exec("perplexity --model " + kModel + " --text " + kTiny +
                   " --seqlen 128 --max-windows 2 --documents blank-line");
  EXPECT_EQ(text.code, 0);
  EXPECT_THAT(text.out, HasSubstr("windows: 2 x 128\npredictions: 254\n"));
  EXPECT_EQ(Exec("perplexity --model " + kModel).code, 2);
  EXPECT_EQ(Exec("frobnicate").code, 2);
}

// --streamed_blocks keeps the last blocks in host memory (a no-op move on the CPU): the same
// perplexity; a count the model does not have is an error naming both.
TEST(PerplexityCommandTest, StreamedBlocks) {
  const std::vector<std::string> base = {"--model",     kModel,       "--text",        kTiny,
                                         "--seqlen",    "128",        "--max-windows", "4",
                                         "--documents", "blank-line", "--output",      "json"};
  auto resident = Call(RunPerplexity, base);
  std::vector<std::string> args = base;
  args.insert(args.end(), {"--streamed_blocks", "3"});
  auto streamed = Call(RunPerplexity, args);
  ASSERT_EQ(resident.code, 0) << resident.err;
  ASSERT_EQ(streamed.code, 0) << streamed.err;
  EXPECT_EQ(nlohmann::json::parse(streamed.out)["perplexity"],
            nlohmann::json::parse(resident.out)["perplexity"]);
  args.back() = "9";
  auto too_many = Call(RunPerplexity, args);
  EXPECT_EQ(too_many.code, 1);
  EXPECT_THAT(too_many.err, HasSubstr("9 streamed blocks asked for, the model has 5"));
  args.back() = "-1";
  EXPECT_EQ(Call(RunPerplexity, args).code, 2);
}

TEST(PerplexityCommandTest, ErrorsAreReported) {
  auto no_file = Call(RunPerplexity, {"--model", kModel, "--text", "/nonexistent.txt"});
  EXPECT_EQ(no_file.code, 1);
  EXPECT_THAT(no_file.err, HasSubstr("/nonexistent.txt"));
  auto bad_mode =
      Call(RunPerplexity, {"--model", kModel, "--text", kTiny, "--documents", "sentences"});
  EXPECT_EQ(bad_mode.code, 2);
  auto too_long =
      Call(RunPerplexity, {"--model", kModel, "--text", kTiny, "--seqlen", "100000000"});
  EXPECT_EQ(too_long.code, 1);
  EXPECT_THAT(too_long.err, HasSubstr("no full window"));
}

// A model that computes NaN: the figures are printed, and the command fails, saying why.
TEST(PerplexityCommandTest, NonFinitePerplexityIsAFailure) {
  const std::string dir = std::string(QUANTD_BINARY_DIR) + "/tests/worker_cli/overflowing";
  test_data::WriteOverflowingModel(dir);
  auto run = Call(RunPerplexity, {"--model", dir, "--text", kTiny, "--seqlen", "128",
                                  "--max-windows", "2", "--documents", "blank-line"});
  EXPECT_EQ(run.code, 1);
  EXPECT_THAT(run.out, HasSubstr("perplexity: "));
  EXPECT_THAT(run.err, HasSubstr("the model computes NaN or Inf on this text (an overflow in "
                                 "float32?)"));
  std::filesystem::remove_all(dir);
}

// NaN scores are no accuracy: the table says nan (not the 25 % an argmax over NaN gives), and
// the command fails naming the task.
TEST(ZeroShotCommandTest, NonFiniteScoresAreAFailure) {
  const std::string dir = std::string(QUANTD_BINARY_DIR) + "/tests/worker_cli/overflowing-zs";
  test_data::WriteOverflowingModel(dir);
  ASSERT_EQ(testing::WriteStoryCloze(kTiny, dir + "/cloze.jsonl", 8), 8);
  auto run = Call(RunZeroShot,
                  {"--model", dir, "--tasks", "cloze=" + dir + "/cloze.jsonl", "--output", "json"});
  EXPECT_EQ(run.code, 1);
  auto j = nlohmann::json::parse(run.out);
  EXPECT_TRUE(j["tasks"][0]["acc"].is_null());  // JSON has no NaN
  EXPECT_THAT(run.err, HasSubstr("NaN or Inf log-likelihoods in cloze (8 of 8 examples)"));
  std::filesystem::remove_all(dir);
}

TEST(ZeroShotCommandTest, ScoresEveryTaskAsJsonAndAsATable) {
  const std::string cloze = std::string(QUANTD_BINARY_DIR) + "/tests/worker_cli/cloze.jsonl";
  ASSERT_EQ(testing::WriteStoryCloze(kTiny, cloze, 60), 60);
  const std::string tasks = "cloze=" + cloze + ",cloze-copy=" + cloze;
  auto run = Call(RunZeroShot,
                  {"--model", kModel, "--tasks", tasks, "--output", "json", "--batch-size", "5"});
  ASSERT_EQ(run.code, 0) << run.err;
  auto j = nlohmann::json::parse(run.out);
  ASSERT_EQ(j["tasks"].size(), 2u);
  EXPECT_EQ(j["tasks"][0]["name"], "cloze");
  EXPECT_EQ(j["tasks"][1]["name"], "cloze-copy");
  EXPECT_EQ(j["tasks"][0]["layout"], "generic");
  EXPECT_EQ(j["tasks"][0]["examples"], 60);
  EXPECT_GT(j["tasks"][0]["acc"].get<double>(), 0.30);  // four choices: chance is 0.25
  EXPECT_EQ(j["tasks"][0]["acc"], j["tasks"][1]["acc"]);
  EXPECT_TRUE(j["tasks"][0].contains("acc_norm"));
  EXPECT_TRUE(j["tasks"][0].contains("acc_stderr"));
  EXPECT_FALSE(j["export"].get<bool>());

  // BoolQ has no acc_norm in lm-evaluation-harness ("no"/"yes" by length only favours "yes").
  const std::string boolq = std::string(QUANTD_BINARY_DIR) + "/tests/worker_cli/boolq.jsonl";
  std::ofstream(boolq)
      << R"({"passage": "Lily had a red ball.", "question": "did lily have a ball", "answer": true})"
      << "\n"
      << R"({"passage": "Tom was sad.", "question": "was tom happy", "answer": false})"
      << "\n";
  auto yes_no =
      Call(RunZeroShot, {"--model", kModel, "--tasks", "boolq=" + boolq, "--output", "json"});
  ASSERT_EQ(yes_no.code, 0) << yes_no.err;
  const auto row = nlohmann::json::parse(yes_no.out)["tasks"][0];
  EXPECT_EQ(row["layout"], "boolq");
  EXPECT_FALSE(row.contains("acc_norm")) << row.dump();
  EXPECT_TRUE(row.contains("acc"));

  auto table = Exec("zero-shot --model " + kModel + " --tasks " + cloze + " --limit 25");
  EXPECT_EQ(table.code, 0);
  EXPECT_THAT(table.out, HasSubstr("cloze            generic          25"));
}

TEST(ZeroShotCommandTest, ErrorsAreReported) {
  auto missing = Call(RunZeroShot, {"--model", kModel, "--tasks", "piqa=/nonexistent.jsonl"});
  EXPECT_EQ(missing.code, 1);
  EXPECT_THAT(missing.err, HasSubstr("task piqa: cannot open /nonexistent.jsonl"));
  // A list that does not parse is a usage error named by the flag.
  auto bad_list = Call(RunZeroShot, {"--model", kModel, "--tasks", "a=x.jsonl,a=y.jsonl"});
  EXPECT_EQ(bad_list.code, 2);
  EXPECT_THAT(bad_list.err, HasSubstr("--tasks: entry 2"));
  EXPECT_THAT(bad_list.err, HasSubstr("repeats the task name"));
  EXPECT_EQ(Call(RunZeroShot, {"--model", kModel}).code, 2);
  EXPECT_EQ(Call(RunZeroShot, {"--model", kModel, "--tasks", "x", "--batch-size", "0"}).code, 2);
}

// `run --output json` writes JSON Lines only (events, then the result with its metrics), so a
// pipeline can parse every line; the text output ends with the metrics table, sorted by name.
TEST(RunCommandTest, JsonOutputIsJsonLinesAndTextEndsWithSortedMetrics) {
  const std::string dir = ::testing::TempDir() + "/run-command-test";
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  const std::string spec = dir + "/job.yaml";
  std::ofstream(spec) << "model:\n  path: " << kModel << "\ncalibration:\n  dataset_path: " << kTiny
                      << "\n  documents: blank-line\n  train_size: 4\n  val_size: 2\n"
                         "  training_seqlen: 64\nquant:\n  wbits: 4\n  input_bits: 8\n"
                         "eval:\n  eval_ppl: true\n  ppl_seqlen: 64\n  ppl_max_windows: 2\n";
  const std::string common = "run --spec " + spec + " --work_dir " + dir;
  auto json = Exec(common + " --output json");
  ASSERT_EQ(json.code, 0) << json.out;
  std::istringstream lines(json.out);
  std::string line, last;
  int count = 0;
  while (std::getline(lines, line)) {
    EXPECT_TRUE(nlohmann::json::accept(line)) << "not JSON: " << line;
    last = line;
    ++count;
  }
  EXPECT_GT(count, 1);
  const nlohmann::json result = nlohmann::json::parse(last, nullptr, false);
  EXPECT_TRUE(result.contains("result")) << last;

  auto text = Exec(common);
  ASSERT_EQ(text.code, 0) << text.out;
  std::vector<std::string> names;
  std::istringstream text_lines(text.out);
  bool table = false;  // the lines after the result event
  while (std::getline(text_lines, line)) {
    if (table) names.push_back(line.substr(0, line.find(' ')));
    table = table || line.find(" result ") != std::string::npos;
  }
  EXPECT_GT(names.size(), 1u) << text.out;
  EXPECT_TRUE(std::is_sorted(names.begin(), names.end())) << text.out;
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace quantd::cli
