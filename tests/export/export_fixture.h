// Test helpers for exports: running the quantd-worker executable, a job spec on the shared
// TinyStories text, and a quantized stories260K built directly with worker/quant.
#ifndef QUANTD_TESTS_EXPORT_EXPORT_FIXTURE_H_
#define QUANTD_TESTS_EXPORT_EXPORT_FIXTURE_H_

#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <memory>
#include <optional>
#include <sstream>
#include <string>

#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "quantd/v1/job.pb.h"
#include "tests/common/stories_job.h"
#include "worker/eval/token_stream.h"
#include "worker/export/artifact_writer.h"
#include "worker/model/llama.h"
#include "worker/model/tokenizer.h"
#include "worker/quant/calibration_data.h"
#include "worker/quant/prefix_cache.h"
#include "worker/quant/quantize_model.h"
#include "worker/quant/rotation.h"

namespace quantd::exporter::testing {

inline std::string SharedData(const std::string& relative) {
  return std::string(QUANTD_SHARED_DATA) + "/" + relative;
}
inline std::string StoriesDir() { return SharedData("models/stories260K"); }
inline std::string TextPath() { return SharedData("text/tinystories-valid-subset.txt"); }
inline constexpr char kPplKey[] = "ppl/tinystories-valid-subset.txt/quantized";

// A fresh folder under the build tree for this process and `name`.
inline std::string ScratchDir(const std::string& name) {
  const std::string dir =
      std::string(QUANTD_BINARY_DIR) + "/tests/export/" + name + "-" + std::to_string(getpid());
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  return dir;
}

struct ExecResult {
  int code = -1;
  std::string output;  // stdout and stderr
};

// Runs `quantd-worker <args>` in a new process.
inline ExecResult RunWorker(const std::string& args) {
  const std::string command =
      std::string(QUANTD_BINARY_DIR) + "/worker/quantd-worker " + args + " 2>&1";
  ExecResult result;
  FILE* pipe = popen(command.c_str(), "r");
  if (pipe == nullptr) return result;
  char buffer[4096];
  size_t n;
  while ((n = fread(buffer, 1, sizeof(buffer), pipe)) > 0) result.output.append(buffer, n);
  const int status = pclose(pipe);
  result.code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return result;
}

// The JSON object on the last line of `output`.
inline nlohmann::json LastJsonLine(const std::string& output) {
  std::istringstream lines(output);
  std::string line, last;
  while (std::getline(lines, line)) {
    if (!line.empty() && line[0] == '{') last = line;
  }
  return nlohmann::json::parse(last, nullptr, false);
}

inline nlohmann::json ReadJsonFile(const std::string& path) {
  std::ifstream in(path);
  std::stringstream text;
  text << in.rdbuf();
  return nlohmann::json::parse(text.str(), nullptr, false);
}

inline void WriteJsonFile(const std::string& path, const nlohmann::json& j) {
  std::ofstream(path) << j.dump(2) << "\n";
}

// PrefixQuant settings on TinyStories: rotation with both online Hadamards, detected prefix,
// static W/A/KV scales; evaluation on 8 windows of 256 tokens.
inline v1::JobSpec ExportSpec(const std::string& model_dir, int wbits, int abits, int kvbits,
                              const std::string& output_dir) {
  quantd::test_data::StoriesJobShape shape;
  shape.wbits = wbits;
  shape.abits = abits;
  shape.kvbits = kvbits;
  shape.eval_windows = 8;
  v1::JobSpec spec = quantd::test_data::StoriesQuantSpec(model_dir, shape);
  spec.mutable_quant()->set_w_group_size(-1);
  spec.set_output_dir(output_dir);
  return spec;
}

// The perplexity command that evaluates an export on the windows of ExportSpec.
inline std::string PerplexityArgs(const std::string& dir) {
  return "perplexity --model " + dir + " --text " + TextPath() +
         " --documents blank-line --seqlen 256 --max-windows 8 --batch-size 16 --output json";
}

struct QuantizedStories {
  std::unique_ptr<model::LlamaModel> model;
  std::optional<quant::PrefixCache> prefix;
  quant::RotationOptions rotation;
};

// stories260K rotated (R1-R4), [BOS] prefix KV cache, W4 (groups of 4) A8 static, KV4 static.
inline QuantizedStories MakeQuantizedStories() {
  QuantizedStories out;
  auto model = model::LlamaModel::Load(StoriesDir());
  EXPECT_TRUE(model.ok()) << model.status();
  out.model = std::move(model).value();
  out.rotation.seed = 5;
  out.rotation.down_online_had = true;
  out.rotation.qk_online_had = true;
  EXPECT_TRUE(quant::RotateModel(*out.model, out.rotation).ok());
  auto prefix = quant::BuildPrefixCache(*out.model, {1}, 1);
  EXPECT_TRUE(prefix.ok());
  out.prefix = *std::move(prefix);
  quant::QuantSettings settings;
  settings.weight = {4, 4, false};  // groups of 4 (172 = 4 · 43)
  settings.input_bits = 8;
  settings.input_dynamic = false;
  settings.k_bits = settings.v_bits = 4;
  settings.kv_group_size = 8;
  settings.kv_dynamic = false;
  EXPECT_TRUE(quant::QuantizeModel(*out.model, settings).ok());
  auto tokenizer = model::LoadTokenizer(StoriesDir());
  auto text = eval::ReadTextFile(TextPath());
  auto tokens =
      eval::BuildTokenStream(**tokenizer, text->substr(0, 40000), eval::DocumentMode::kBlankLine);
  auto windows = quant::SampleWindows(*tokens, 4, 0, 128, 1, 1);
  EXPECT_TRUE(windows.ok());
  EXPECT_TRUE(quant::CalibrateStatic(*out.model, windows->train, &out.prefix->kv, 4).ok());
  return out;
}

// What the writer exports of `q` (not owning: q must outlive it).
inline ArtifactModel ArtifactOf(const QuantizedStories& q) {
  ArtifactModel artifact;
  artifact.model = q.model.get();
  artifact.prefix = &*q.prefix;
  artifact.rotated = true;
  artifact.rotation = q.rotation;
  artifact.source_model_dir = StoriesDir();
  return artifact;
}

}  // namespace quantd::exporter::testing

#endif  // QUANTD_TESTS_EXPORT_EXPORT_FIXTURE_H_
