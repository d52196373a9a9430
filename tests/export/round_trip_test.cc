// Export round trips: a job writes its quantized model to output_dir; a new quantd-worker
// process loads the folder and reproduces the job's perplexity (within 1e-4 relative; 1e-3 for the
// CUDA twin) on the same windows — on stories260K and on the planted-outlier variant (a multi-token
// prefix).
#include <filesystem>
#include <set>

#include "gtest/gtest.h"
#include "tests/common/story_cloze.h"
#include "tests/export/export_fixture.h"
#include "worker/export/artifact_reader.h"
#include "worker/export/artifact_writer.h"
#include "worker/pipeline/run_job.h"
#include "worker/quant/outlier_variant.h"

namespace quantd::exporter {
namespace {

using namespace testing;  // NOLINT

class NullSink : public EventSink {
 public:
  absl::Status Emit(const v1::JobEvent& event) override {
    if (event.has_phase_change()) phases.push_back(event.phase_change().phase());
    if (event.has_artifact()) artifacts.push_back(event.artifact());
    return absl::OkStatus();
  }
  std::vector<v1::Phase> phases;
  std::vector<v1::Artifact> artifacts;
};

// Runs the job on `device`, then checks the folder and the perplexity of a new process on the
// same device (within `relative`); returns the result. The device is explicit: a job left to
// pick takes the GPU when there is one, the commands default to the CPU, and GPU and CPU
// perplexities differ by about 5e-4 (seen on an H100), which says nothing about the export.
v1::JobResult RunAndReload(const v1::JobSpec& spec, const std::string& device = "cpu",
                           double relative = 1e-4) {
  NullSink sink;
  CancellationToken cancel;
  pipeline::RunJobOptions options;
  options.device = device;
  auto outcome = pipeline::RunJob(spec, options, sink, cancel);
  EXPECT_TRUE(outcome.status.ok()) << outcome.status;
  if (!outcome.status.ok()) return {};
  EXPECT_NE(std::find(sink.phases.begin(), sink.phases.end(), v1::PHASE_EXPORT), sink.phases.end());
  const std::string dir = outcome.result.artifact_path();
  EXPECT_EQ(std::filesystem::path(dir), std::filesystem::absolute(spec.output_dir()));
  // One event announces the committed export, with its size.
  EXPECT_EQ(sink.artifacts.size(), 1u);
  if (!sink.artifacts.empty()) {
    EXPECT_EQ(sink.artifacts[0].kind(), "quantized_model");
    EXPECT_EQ(sink.artifacts[0].path(), dir);
    EXPECT_EQ(sink.artifacts[0].size_bytes(),
              static_cast<int64_t>(outcome.result.metrics().at("export/bytes")));
    EXPECT_GT(sink.artifacts[0].size_bytes(), 0);
  }
  for (const char* file : {"model.safetensors", "quant_config.json", "manifest.json", "config.json",
                           "tokenizer.model"}) {
    EXPECT_TRUE(std::filesystem::is_regular_file(dir + "/" + file)) << file;
  }
  EXPECT_EQ(std::filesystem::exists(dir + "/prefix.safetensors"),
            outcome.result.prefix_token_ids_size() > 0 && spec.prefix().enabled());
  for (const auto& entry : std::filesystem::directory_iterator(
           std::filesystem::path(dir).parent_path())) {  // no staging folder left behind
    EXPECT_EQ(entry.path().string().find(".tmp-"), std::string::npos) << entry.path();
  }
  const double job_ppl = outcome.result.metrics().at(kPplKey);

  const ExecResult run = RunWorker(PerplexityArgs(dir) + " --device " + device);
  EXPECT_EQ(run.code, 0) << run.output;
  const nlohmann::json reloaded = LastJsonLine(run.output);
  EXPECT_TRUE(reloaded.is_object()) << run.output;
  if (reloaded.is_object()) {
    EXPECT_TRUE(reloaded.value("export", false));
    EXPECT_EQ(reloaded.value("windows", 0), 8);
    EXPECT_NEAR(reloaded.value("perplexity", 0.0) / job_ppl, 1.0, relative)
        << "job " << job_ppl << " vs reloaded " << reloaded.value("perplexity", 0.0);
    EXPECT_EQ(reloaded.value("prefix_tokens", 0), outcome.result.prefix_token_ids_size());
  }

  const nlohmann::json manifest = ReadJsonFile(dir + "/manifest.json");
  EXPECT_EQ(manifest["metrics"].value(kPplKey, 0.0), job_ppl);
  EXPECT_EQ(manifest["seeds"].value("calibration", 0), 42);
  EXPECT_EQ(manifest["calibration"]["window_ids"].size(), 8u);
  EXPECT_FALSE(manifest["versions"].value("libtorch", "").empty());
  EXPECT_FALSE(manifest["input_model"]["files"].empty());
  EXPECT_GT(manifest["timings"].value("export_write_seconds", -1.0), 0);
  EXPECT_NEAR(manifest["validation"].value("reloaded_perplexity", 0.0) /
                  manifest["validation"].value("in_memory_perplexity", 1.0),
              1.0, 1e-4);
  const nlohmann::json config = ReadJsonFile(dir + "/quant_config.json");
  if (spec.prefix().enabled()) {
    EXPECT_EQ(config["prefix"]["token_ids"].get<std::vector<int32_t>>(),
              std::vector<int32_t>(outcome.result.prefix_token_ids().begin(),
                                   outcome.result.prefix_token_ids().end()));
  } else {
    EXPECT_TRUE(config["prefix"].is_null());
  }
  return outcome.result;
}

TEST(ExportRoundTripTest, Stories260KW4A4KV4ReloadsInANewProcess) {
  const std::string scratch = ScratchDir("roundtrip-stories");
  const std::string out = scratch + "/w4a4kv4";
  const v1::JobResult result = RunAndReload(ExportSpec(StoriesDir(), 4, 4, 4, out));
  const nlohmann::json config = ReadJsonFile(out + "/quant_config.json");
  EXPECT_EQ(config["weight"]["bits"], 4);
  EXPECT_EQ(config["activation"]["mode"], "static");
  EXPECT_FALSE(config["rotation"]["down_proj_online_hadamard"].is_null());
  EXPECT_FALSE(config["rotation"]["qk_online_hadamard"].is_null());

  // inspect: the settings, the prefix and the compression against the fp32 input.
  const ExecResult inspect = RunWorker("inspect " + out + " --output json");
  ASSERT_EQ(inspect.code, 0) << inspect.output;
  const nlohmann::json summary = LastJsonLine(inspect.output);
  EXPECT_EQ(summary["weight"]["bits"], 4);
  // Packed 4-bit blocks; stories260K's fp32 embeddings and (rotated, so untied) lm_head dominate.
  EXPECT_GT(summary.value("compression_ratio", 0.0), 2.0);
  EXPECT_EQ(summary["input_bytes"].get<uint64_t>(),
            std::filesystem::file_size(StoriesDir() + "/model.safetensors"));
  const ExecResult text = RunWorker("inspect " + out);
  EXPECT_EQ(text.code, 0);
  EXPECT_NE(text.output.find("compression:"), std::string::npos) << text.output;
  EXPECT_NE(text.output.find("1 token, ids 1\n"), std::string::npos) << text.output;  // [BOS]
  EXPECT_NE(text.output.find(kPplKey), std::string::npos) << text.output;

  // generate runs the export after its prefix and produces tokens.
  const ExecResult generate = RunWorker("generate --model " + out +
                                        " --prompt 'Once upon a time' --max-tokens 8 "
                                        "--output json");
  ASSERT_EQ(generate.code, 0) << generate.output;
  EXPECT_EQ(LastJsonLine(generate.output)["generated_ids"].size(), 8u);
  // Without a prompt: the prefix (which ends in BOS) is the whole context.
  const ExecResult unprompted =
      RunWorker("generate --model " + out + " --max-tokens 4 --output json");
  ASSERT_EQ(unprompted.code, 0) << unprompted.output;
  EXPECT_EQ(LastJsonLine(unprompted.output)["generated_ids"].size(), 4u);

  // A second job into the same folder replaces the earlier export.
  const v1::JobResult again = RunAndReload(ExportSpec(StoriesDir(), 8, 8, 8, out));
  EXPECT_EQ(ReadJsonFile(out + "/quant_config.json")["weight"]["bits"], 8);
  std::filesystem::remove_all(scratch);
}

// The same on a GPU: the job quantizes and exports on CUDA, and a new process evaluates the
// export on CUDA. Within 1e-3: the command's batches differ from the job's, and cuBLAS picks
// its kernels by shape (the in-process check of the job's own validation stays at 1e-4).
TEST(ExportRoundTripTest, JobOnCudaReloadsOnCuda_CUDA) {
  if (!torch::cuda::is_available()) GTEST_SKIP() << "no CUDA device";
  const std::string scratch = ScratchDir("roundtrip-cuda");
  RunAndReload(ExportSpec(StoriesDir(), 4, 4, 4, scratch + "/w4a4kv4"), "cuda", 1e-3);
  std::filesystem::remove_all(scratch);
}

TEST(ExportRoundTripTest, OutlierVariantWithItsPrefixReloadsInANewProcess) {
  const std::string scratch = ScratchDir("roundtrip-outlier");
  quant::OutlierVariantOptions options;
  options.calibration_text = TextPath();
  ASSERT_TRUE(quant::WriteOutlierVariant(StoriesDir(), scratch + "/variant", options).ok());
  // With a zero-shot task: the export, after its multi-token prefix, scores what the job did.
  const std::string cloze = scratch + "/cloze.jsonl";
  ASSERT_EQ(quantd::testing::WriteStoryCloze(TextPath(), cloze, 60), 60);
  v1::JobSpec spec = ExportSpec(scratch + "/variant", 4, 8, 8, scratch + "/export");
  spec.mutable_eval()->set_eval_tasks("cloze=" + cloze);
  const v1::JobResult result = RunAndReload(spec);
  EXPECT_GT(result.prefix_token_ids_size(), 1);  // detected outlier tokens, then BOS
  const ExecResult zero_shot = RunWorker("zero-shot --model " + scratch +
                                         "/export --tasks cloze=" + cloze + " --output json");
  ASSERT_EQ(zero_shot.code, 0) << zero_shot.output;
  const nlohmann::json scored = LastJsonLine(zero_shot.output);
  EXPECT_EQ(scored["prefix_tokens"], result.prefix_token_ids_size());
  // The reloaded model matches the job's to ~1e-5: at most one near-tie may flip.
  EXPECT_NEAR(scored["tasks"][0]["acc"].get<double>(), result.metrics().at("acc/cloze/quantized"),
              1.5 / 60);
  const ExecResult inspect = RunWorker("inspect " + scratch + "/export");
  EXPECT_NE(inspect.output.find("acc/cloze/quantized:"), std::string::npos) << inspect.output;
  std::filesystem::remove_all(scratch);
}

TEST(ExportRoundTripTest, PlainRtnWithDynamicActivationsAndTiedEmbeddings) {
  // No rotation (lm_head stays tied to the embeddings), no prefix, weight groups of 4, dynamic
  // activation scales, full-precision KV cache.
  const std::string scratch = ScratchDir("roundtrip-rtn");
  v1::JobSpec spec = ExportSpec(StoriesDir(), 4, 8, 16, scratch + "/rtn");
  spec.mutable_quant()->set_w_group_size(4);
  spec.mutable_quant()->set_input_mode(v1::QUANT_MODE_DYNAMIC);
  spec.mutable_quant()->set_mse_init(false);
  spec.clear_rotation();
  spec.mutable_prefix()->set_enabled(false);
  RunAndReload(spec);
  const nlohmann::json config = ReadJsonFile(scratch + "/rtn/quant_config.json");
  EXPECT_TRUE(config["tie_word_embeddings"].get<bool>());
  EXPECT_EQ(config["weight"]["group_size"], 4);
  EXPECT_EQ(config["activation"]["mode"], "dynamic");
  EXPECT_EQ(config["kv_cache"]["k_bits"], 16);
  EXPECT_FALSE(config["rotation"]["applied"].get<bool>());
  std::filesystem::remove_all(scratch);
}

TEST(ExportRoundTripTest, JobRefusesAnOutputDirThatIsNotAnExport) {
  const std::string scratch = ScratchDir("roundtrip-refuse");
  std::ofstream(scratch + "/keep.txt") << "user data";
  NullSink sink;
  CancellationToken cancel;
  auto outcome = pipeline::RunJob(ExportSpec(StoriesDir(), 4, 4, 4, scratch), {}, sink, cancel);
  EXPECT_EQ(outcome.reason, v1::FAILURE_REASON_USER_ERROR);
  EXPECT_NE(outcome.status.message().find("output_dir"), std::string::npos) << outcome.status;
  EXPECT_TRUE(std::filesystem::exists(scratch + "/keep.txt"));
  std::filesystem::remove_all(scratch);
}

TEST(ExportRoundTripTest, ShardedExportLoadsToTheSameLogits) {
  const std::string scratch = ScratchDir("roundtrip-sharded");
  QuantizedStories q = MakeQuantizedStories();
  const ArtifactModel artifact = ArtifactOf(q);
  const std::string dir = scratch + "/sharded";
  auto files = WriteArtifactFiles(artifact, StagingDirFor(dir), 64 << 10);
  ASSERT_TRUE(files.ok()) << files.status();
  ASSERT_TRUE(WriteManifest(StagingDirFor(dir), {{"note", "test"}}, *files).ok());
  ASSERT_TRUE(CommitArtifact(StagingDirFor(dir), dir).ok());
  EXPECT_TRUE(std::filesystem::exists(dir + "/model.safetensors.index.json"));
  std::set<std::string> shards;
  const nlohmann::json index = ReadJsonFile(dir + "/model.safetensors.index.json");
  for (const auto& [name, file] : index["weight_map"].items()) {
    shards.insert(file.get<std::string>());
    EXPECT_TRUE(std::filesystem::is_regular_file(dir + "/" + file.get<std::string>())) << file;
  }
  EXPECT_GE(shards.size(), 2u);
  EXPECT_FALSE(std::filesystem::exists(dir + "/model.safetensors"));
  EXPECT_EQ(ReadJsonFile(dir + "/quant_config.json")["files"]["model"],
            "model.safetensors.index.json");

  auto loaded = LoadArtifact(dir, {});
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  torch::NoGradGuard no_grad;
  model::ForwardRequest request;
  request.input_ids = torch::arange(2, 60, torch::kInt64).unsqueeze(0);
  request.past = &q.prefix->kv;
  auto expected = q.model->Forward(request);
  request.past = &loaded->prefix->kv;
  auto actual = loaded->model->Forward(request);
  ASSERT_TRUE(expected.ok() && actual.ok());
  EXPECT_TRUE(torch::equal(expected->logits, actual->logits))
      << (expected->logits - actual->logits).abs().max().item<float>();
  EXPECT_TRUE(torch::equal(loaded->prefix->last_logits, q.prefix->last_logits));

  // With its last blocks streamed (what a job that streams checks its export with) the same
  // model comes back; a count past the model's layers is refused.
  model::LoadOptions streaming;
  streaming.streamed_blocks = 3;
  auto streamed = LoadArtifact(dir, streaming);
  ASSERT_TRUE(streamed.ok()) << streamed.status();
  EXPECT_EQ(streamed->model->streamed_blocks(), 3);
  auto streamed_logits = streamed->model->Forward(request);
  ASSERT_TRUE(streamed_logits.ok()) << streamed_logits.status();
  EXPECT_TRUE(torch::equal(streamed_logits->logits, actual->logits));
  streaming.streamed_blocks = 99;
  EXPECT_EQ(LoadArtifact(dir, streaming).status().code(), absl::StatusCode::kInvalidArgument);
  std::filesystem::remove_all(scratch);
}

}  // namespace
}  // namespace quantd::exporter
