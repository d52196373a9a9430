#include "worker/train/checkpoint.h"

#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "tests/train/train_fixture.h"

namespace quantd::train {
namespace {

TEST(TrainCheckpointTest, PrefixRoundTripAndFingerprintMismatch) {
  const std::string dir = ::testing::TempDir() + "/prefix_checkpoint";
  std::filesystem::remove_all(dir);
  PrefixTrainResult r;
  r.embeddings = torch::randn({3, 64});
  r.init_ids = {403, 1, -1};
  r.nearest_ids = {403, 1, 77};
  r.nearest_cosine = {1.0, 0.5, 0.25};
  r.nearest_text = {" Once", "", "x"};
  r.initial_loss = 3.5;
  r.best_loss = 2.25;
  r.best_epoch = 4;
  r.steps = 40;
  ASSERT_TRUE(SavePrefixCheckpoint(dir, "abc", r).ok());

  auto loaded = LoadPrefixCheckpoint(dir, "abc");
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  ASSERT_TRUE(loaded->has_value());
  const PrefixTrainResult& l = **loaded;
  EXPECT_TRUE(torch::equal(l.embeddings, r.embeddings));
  EXPECT_EQ(l.init_ids, r.init_ids);
  EXPECT_EQ(l.nearest_ids, r.nearest_ids);
  EXPECT_EQ(l.nearest_cosine, r.nearest_cosine);
  EXPECT_EQ(l.nearest_text, r.nearest_text);
  EXPECT_EQ(l.best_epoch, 4);
  EXPECT_EQ(l.steps, 40);
  EXPECT_DOUBLE_EQ(l.best_loss, 2.25);

  std::vector<std::string> logs;
  auto other = LoadPrefixCheckpoint(dir, "xyz", [&](const std::string& s) { logs.push_back(s); });
  ASSERT_TRUE(other.ok());
  EXPECT_FALSE(other->has_value());
  ASSERT_EQ(logs.size(), 1u);
  EXPECT_NE(logs[0].find("fingerprint"), std::string::npos);

  auto none = LoadPrefixCheckpoint(::testing::TempDir() + "/no_such_dir", "abc");
  ASSERT_TRUE(none.ok());
  EXPECT_FALSE(none->has_value());
}

TEST(TrainCheckpointTest, FingerprintCoversSpecAndWeights) {
  auto model = testing::LoadModel();
  ASSERT_NE(model, nullptr);
  const std::string a = Fingerprint("spec", *model);
  EXPECT_EQ(a, Fingerprint("spec", *model));
  EXPECT_NE(a, Fingerprint("spec2", *model));
  auto dense = std::dynamic_pointer_cast<model::DenseLinear>(model->blocks[3].up_proj);
  ASSERT_NE(dense, nullptr);
  torch::NoGradGuard no_grad;
  dense->weight[0][0] += 1e-3;
  EXPECT_NE(a, Fingerprint("spec", *model));
}

// A damaged checkpoint (a disk that filled up, a file copied half-way) is set aside with a
// warning and the phase starts afresh, rather than failing every rerun of the job.
TEST(TrainCheckpointTest, UnreadableFilesAreSetAsideWithAWarning) {
  const std::string dir = ::testing::TempDir() + "/corrupt_checkpoint";
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  for (const char* file : {"finetune.pt", "prefix.pt"}) {
    std::ofstream(dir + "/" + file) << "not a checkpoint";
  }
  std::vector<std::string> logs;
  const auto log = [&](const std::string& line) { logs.push_back(line); };
  auto finetune = LoadFinetuneCheckpoint(dir, "abc", log);
  ASSERT_TRUE(finetune.ok()) << finetune.status();
  EXPECT_FALSE(finetune->has_value());
  auto prefix = LoadPrefixCheckpoint(dir, "abc", log);
  ASSERT_TRUE(prefix.ok()) << prefix.status();
  EXPECT_FALSE(prefix->has_value());
  ASSERT_EQ(logs.size(), 2u);
  for (const char* file : {"finetune.pt", "prefix.pt"}) {
    EXPECT_FALSE(std::filesystem::exists(dir + "/" + file)) << file;
    EXPECT_TRUE(std::filesystem::exists(dir + "/" + file + ".unreadable")) << file;
  }
  EXPECT_NE(logs[0].find("warning: ignoring unreadable checkpoint"), std::string::npos) << logs[0];
  EXPECT_EQ(logs[0].find("Exception raised from"), std::string::npos) << logs[0];
  std::filesystem::remove_all(dir);
}

// A full disk (the .tmp is a link to /dev/full, whose writes fail with ENOSPC) is a clear
// status, not a std::terminate from torch's writer; no .tmp is left and the earlier file stays.
TEST(TrainCheckpointTest, FullDiskIsAStatusAndLeavesNoTemporaryFile) {
  if (!std::filesystem::exists("/dev/full")) GTEST_SKIP() << "no /dev/full";
  const std::string dir = ::testing::TempDir() + "/full_disk_checkpoint";
  std::filesystem::remove_all(dir);
  FinetuneCheckpoint c;
  c.fingerprint = "abc";
  c.next_block = 1;
  c.block_states.push_back({{"w", torch::randn({64, 64})}});
  c.block_stats.push_back({1, 2, 3, 0, 1, 1});
  ASSERT_TRUE(SaveFinetuneCheckpoint(dir, c).ok());

  const std::string tmp = dir + "/finetune.pt.tmp";
  std::filesystem::create_symlink("/dev/full", tmp);
  c.next_block = 2;
  c.block_states.push_back({{"w", torch::randn({64, 64})}});
  c.block_stats.push_back({1, 2, 3, 0, 1, 1});
  const absl::Status status = SaveFinetuneCheckpoint(dir, c);
  EXPECT_EQ(status.code(), absl::StatusCode::kResourceExhausted) << status;
  EXPECT_NE(status.message().find(tmp), std::string::npos) << status;
  EXPECT_NE(status.message().find("No space left on device"), std::string::npos) << status;
  EXPECT_FALSE(std::filesystem::exists(std::filesystem::symlink_status(tmp)));

  auto kept = LoadFinetuneCheckpoint(dir, "abc");
  ASSERT_TRUE(kept.ok()) << kept.status();
  ASSERT_TRUE(kept->has_value());
  EXPECT_EQ((*kept)->next_block, 1);
}

}  // namespace
}  // namespace quantd::train
