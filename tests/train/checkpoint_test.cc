#include "worker/train/checkpoint.h"

#include <filesystem>
#include <fstream>

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

TEST(TrainCheckpointTest, CorruptFileIsAnError) {
  const std::string dir = ::testing::TempDir() + "/corrupt_checkpoint";
  std::filesystem::create_directories(dir);
  {
    std::ofstream out(dir + "/finetune.pt");
    out << "not a checkpoint";
  }
  EXPECT_EQ(LoadFinetuneCheckpoint(dir, "abc").status().code(), absl::StatusCode::kInternal);
}

}  // namespace
}  // namespace quantd::train
