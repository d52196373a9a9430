// Corrupted exports are refused, by a new quantd-worker process, with an error naming the file
// at fault: a truncated shard, a flipped byte, a missing scale, a wrong quant_config.json, a
// missing manifest (an export that never finished).
#include <filesystem>
#include <fstream>

#include "gtest/gtest.h"
#include "tests/export/export_fixture.h"
#include "worker/export/artifact_format.h"
#include "worker/export/artifact_writer.h"
#include "worker/export/safetensors_writer.h"
#include "worker/model/checkpoint.h"

namespace quantd::exporter {
namespace {

using namespace testing;  // NOLINT
namespace fs = std::filesystem;

class CorruptionTest : public ::testing::Test {
 protected:
  // One good export per suite, single-file and sharded; each test corrupts a copy.
  static void SetUpTestSuite() {
    scratch_ = new std::string(ScratchDir("corruption"));
    QuantizedStories q = MakeQuantizedStories();
    const ArtifactModel artifact = ArtifactOf(q);
    for (const auto& [name, shard] :
         {std::pair<std::string, uint64_t>{"single", kDefaultMaxShardBytes},
          {"sharded", 64 << 10}}) {
      const std::string dir = *scratch_ + "/" + name;
      auto files = WriteArtifactFiles(artifact, StagingDirFor(dir), shard);
      ASSERT_TRUE(files.ok()) << files.status();
      ASSERT_TRUE(WriteManifest(StagingDirFor(dir), nlohmann::json::object(), *files).ok());
      ASSERT_TRUE(CommitArtifact(StagingDirFor(dir), dir).ok());
    }
  }
  static void TearDownTestSuite() {
    fs::remove_all(*scratch_);
    delete scratch_;
  }

  // A copy of the "single" or "sharded" export to corrupt.
  std::string Copy(const std::string& which) {
    const std::string dir =
        *scratch_ + "/" + ::testing::UnitTest::GetInstance()->current_test_info()->name();
    fs::remove_all(dir);
    fs::copy(*scratch_ + "/" + which, dir, fs::copy_options::recursive);
    return dir;
  }

  // The perplexity command's failure on `dir`: exit code 1 and the message.
  static std::string Refusal(const std::string& dir) {
    const ExecResult run = RunWorker(PerplexityArgs(dir));
    EXPECT_EQ(run.code, 1) << run.output;
    const ExecResult inspect = RunWorker("inspect " + dir);
    EXPECT_EQ(inspect.code, 1) << inspect.output;
    return run.output;
  }

  static std::string* scratch_;
};

std::string* CorruptionTest::scratch_ = nullptr;

TEST_F(CorruptionTest, TheGoodExportsLoad) {
  for (const char* which : {"single", "sharded"}) {
    const ExecResult run = RunWorker(PerplexityArgs(*scratch_ + "/" + which));
    EXPECT_EQ(run.code, 0) << run.output;
  }
}

TEST_F(CorruptionTest, TruncatedShard) {
  const std::string dir = Copy("sharded");
  const nlohmann::json index = ReadJsonFile(dir + "/model.safetensors.index.json");
  const std::string shard = index["weight_map"]["model.layers.1.mlp.down_proj.qweight"];
  EXPECT_NE(shard.find("-of-"), std::string::npos);
  fs::resize_file(dir + "/" + shard, fs::file_size(dir + "/" + shard) / 2);
  const std::string message = Refusal(dir);
  EXPECT_NE(message.find(shard), std::string::npos) << message;

  const std::string single = Copy("single");
  fs::resize_file(single + "/model.safetensors", fs::file_size(single + "/model.safetensors") - 1);
  const std::string single_message = Refusal(single);
  EXPECT_NE(single_message.find("model.safetensors"), std::string::npos) << single_message;
}

TEST_F(CorruptionTest, FlippedByte) {
  const std::string dir = Copy("single");
  const std::string file = dir + "/model.safetensors";
  {
    std::fstream f(file, std::ios::in | std::ios::out | std::ios::binary);
    f.seekg(-100, std::ios::end);
    char byte = 0;
    f.read(&byte, 1);
    byte ^= 0x10;
    f.seekp(-100, std::ios::end);
    f.write(&byte, 1);
  }
  const std::string message = Refusal(dir);
  EXPECT_NE(message.find("model.safetensors: SHA-256"), std::string::npos) << message;

  const std::string prefix_dir = Copy("single");
  {
    std::fstream f(prefix_dir + "/prefix.safetensors",
                   std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(-1, std::ios::end);
    f.write("\x7f", 1);
  }
  const std::string prefix_message = Refusal(prefix_dir);
  EXPECT_NE(prefix_message.find("prefix.safetensors"), std::string::npos) << prefix_message;
}

TEST_F(CorruptionTest, MissingScale) {
  const std::string dir = Copy("single");
  const std::string file = dir + "/model.safetensors";
  const std::string dropped = "model.layers.1.mlp.down_proj.scales";
  {  // model.safetensors rewritten without one scale tensor
    auto checkpoint = model::Checkpoint::Open(file);
    ASSERT_TRUE(checkpoint.ok());
    std::vector<TensorDecl> decls;
    std::vector<torch::Tensor> tensors;
    for (const std::string& name : (*checkpoint)->TensorNames()) {
      if (name == dropped) continue;
      auto entry = (*checkpoint)->Entry(name);
      decls.push_back({name, entry->dtype, entry->shape});
      tensors.push_back(*(*checkpoint)->LoadStored(name));
    }
    auto writer = SafetensorsWriter::Create(file + ".new", decls);
    ASSERT_TRUE(writer.ok());
    for (size_t i = 0; i < decls.size(); ++i) {
      ASSERT_TRUE((*writer)
                      ->Write(decls[i].name, tensors[i].data_ptr(),
                              tensors[i].numel() * tensors[i].element_size())
                      .ok());
    }
    ASSERT_TRUE((*writer)->Finish().ok());
  }
  fs::rename(file + ".new", file);
  const std::string message = Refusal(dir);
  EXPECT_NE(message.find("model.safetensors: tensor '" + dropped + "' is missing"),
            std::string::npos)
      << message;
}

TEST_F(CorruptionTest, WrongQuantConfig) {
  struct Case {
    const char* what;
    std::function<void(nlohmann::json&)> edit;
  };
  const Case cases[] = {
      {"weight bits", [](nlohmann::json& j) { j["weight"]["bits"] = 8; }},
      {"kv mode", [](nlohmann::json& j) { j["kv_cache"]["mode"] = "dynamic"; }},
      {"bits out of range", [](nlohmann::json& j) { j["activation"]["bits"] = 12; }},
      {"format version", [](nlohmann::json& j) { j["format_version"] = 2; }},
      {"prefix tokens",
       [](nlohmann::json& j) {
         j["prefix"]["token_ids"] = {1, 1};
       }},
      {"only the checksum", [](nlohmann::json& j) { j["note"] = "edited by hand"; }},
  };
  for (const Case& c : cases) {
    const std::string dir = Copy("single");
    nlohmann::json config = ReadJsonFile(dir + "/quant_config.json");
    c.edit(config);
    WriteJsonFile(dir + "/quant_config.json", config);
    const std::string message = Refusal(dir);
    EXPECT_NE(message.find("quant_config.json"), std::string::npos) << c.what << ": " << message;
  }
}

TEST_F(CorruptionTest, MissingManifestMeansUnfinished) {
  const std::string dir = Copy("single");
  fs::remove(dir + "/manifest.json");
  const std::string message = Refusal(dir);
  EXPECT_NE(message.find("manifest.json is missing"), std::string::npos) << message;
  EXPECT_NE(message.find("did not finish"), std::string::npos) << message;
}

TEST_F(CorruptionTest, MissingFileListedInTheManifest) {
  const std::string dir = Copy("single");
  fs::remove(dir + "/tokenizer.model");
  const ExecResult run = RunWorker("inspect " + dir);
  EXPECT_EQ(run.code, 1);
  EXPECT_NE(run.output.find("tokenizer.model: missing"), std::string::npos) << run.output;
}

// A manifest edited to leave out a file the load reads (so that nothing checks that file) is
// refused, naming the file.
TEST_F(CorruptionTest, AFileTheLoadReadsMustBeInTheManifest) {
  const std::string dir = Copy("single");
  nlohmann::json manifest = [&] {
    std::ifstream in(dir + "/manifest.json");
    return nlohmann::json::parse(in);
  }();
  nlohmann::json kept = nlohmann::json::array();
  for (const auto& f : manifest["files"]) {
    if (f["name"] != "model.safetensors") kept.push_back(f);
  }
  ASSERT_LT(kept.size(), manifest["files"].size());
  manifest["files"] = kept;
  std::ofstream(dir + "/manifest.json", std::ios::trunc) << manifest.dump(2);
  const std::string message = Refusal(dir);
  EXPECT_NE(message.find("model.safetensors is not listed in manifest.json"), std::string::npos)
      << message;
}

// An output_dir is replaced only when it is an earlier export and nothing else: a folder with
// another tool's quant_config.json, or an export a user added a file to, is left as it is.
TEST_F(CorruptionTest, OnlyAFolderHoldingJustAnExportIsReplaced) {
  const std::string target = Copy("single");
  const auto stage = [&] {
    fs::remove_all(StagingDirFor(target));
    fs::copy(*scratch_ + "/single", StagingDirFor(target), fs::copy_options::recursive);
  };
  const auto write = [](const std::string& path, const std::string& text) {
    std::ofstream(path) << text;
  };
  // An earlier export with a file of the user's beside it.
  write(target + "/notes.txt", "keep me");
  stage();
  absl::Status commit = CommitArtifact(StagingDirFor(target), target);
  EXPECT_EQ(commit.code(), absl::StatusCode::kFailedPrecondition) << commit;
  EXPECT_TRUE(fs::exists(target + "/notes.txt"));

  // Another tool's quantized model: a quant_config.json but no manifest of ours.
  const std::string foreign = target + "-foreign";
  fs::create_directories(foreign + "/sub");
  write(foreign + "/quant_config.json", R"({"w_bit": 4})");
  write(foreign + "/sub/weights.bin", "data");
  fs::rename(StagingDirFor(target), StagingDirFor(foreign));
  commit = CommitArtifact(StagingDirFor(foreign), foreign);
  EXPECT_EQ(commit.code(), absl::StatusCode::kFailedPrecondition) << commit;
  EXPECT_TRUE(fs::exists(foreign + "/sub/weights.bin"));
  EXPECT_FALSE(IsReplaceableArtifactDir(foreign));
  fs::remove_all(StagingDirFor(foreign));
  fs::remove_all(foreign);

  // The export alone is replaced.
  fs::remove(target + "/notes.txt");
  EXPECT_TRUE(IsReplaceableArtifactDir(target));
  stage();
  commit = CommitArtifact(StagingDirFor(target), target);
  EXPECT_TRUE(commit.ok()) << commit;
  EXPECT_TRUE(IsReplaceableArtifactDir(target));
  // Exchanged in one step, the earlier export removed: nothing left beside it.
  EXPECT_FALSE(fs::exists(StagingDirFor(target)));
  EXPECT_FALSE(fs::exists(StagingDirFor(target) + ".old"));
}

// A folder with a manifest.json but no quant_config.json is a damaged export, and the commands
// say so rather than reading it as a Hugging Face model with missing tensors.
TEST_F(CorruptionTest, MissingQuantConfigIsAnExportError) {
  const std::string dir = Copy("single");
  fs::remove(dir + "/quant_config.json");
  const std::string message = Refusal(dir);
  EXPECT_NE(message.find("quant_config.json"), std::string::npos) << message;
  EXPECT_EQ(message.find("has no tensor"), std::string::npos) << message;
}

}  // namespace
}  // namespace quantd::exporter
