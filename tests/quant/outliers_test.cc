// Outlier detection on stories260K (none) and on the planted-outlier variant (exactly the
// markers without a BOS before them), the variant's full-precision quality, and the prefixed KV
// cache.
#include "worker/quant/outliers.h"

#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <set>

#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "tests/quant/quant_fixture.h"
#include "worker/quant/calibration_data.h"
#include "worker/quant/outlier_variant.h"
#include "worker/quant/prefix_cache.h"
#include "worker/quant/rotation.h"

namespace quantd::quant {
namespace {

using testing::LoadModel;
using testing::SharedData;
using testing::StoryTokens;

class OutlierTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    // One folder per test process: ctest runs each test in its own process, maybe in parallel.
    variant_dir_ = new std::string(std::string(QUANTD_BINARY_DIR) +
                                   "/tests/quant/outlier-variant-" + std::to_string(getpid()));
    OutlierVariantOptions options;
    options.calibration_text = SharedData("text/tinystories-valid-subset.txt");
    auto status = WriteOutlierVariant(testing::StoriesDir(), *variant_dir_, options);
    ASSERT_TRUE(status.ok()) << status;
    tokens_ = new std::vector<int32_t>(StoryTokens(60000));
    // The tool records the ids it planted; they must decode to the markers.
    std::ifstream config(*variant_dir_ + "/config.json");
    auto json = nlohmann::json::parse(config);
    markers_ = json["quantd_outlier_variant"]["marker_ids"].get<std::vector<int32_t>>();
    ASSERT_EQ(markers_.size(), 2u);
    auto tokenizer = model::LoadTokenizer(*variant_dir_);
    ASSERT_TRUE(tokenizer.ok());
    EXPECT_EQ(*(*tokenizer)->Decode({markers_[0]}), ".");
    EXPECT_EQ(*(*tokenizer)->Decode({markers_[1]}), ",");
  }
  static void TearDownTestSuite() {
    std::filesystem::remove_all(*variant_dir_);
    delete variant_dir_;
    delete tokens_;
  }
  static std::vector<std::vector<int32_t>> Windows(int64_t count) {
    auto windows = SampleWindows(*tokens_, count, 0, 256, /*seed=*/5, kBos);
    EXPECT_TRUE(windows.ok());
    return windows->train;
  }
  static constexpr int32_t kBos = 1;
  static inline std::string* variant_dir_ = nullptr;
  static inline std::vector<int32_t>* tokens_ = nullptr;
  static inline std::vector<int32_t> markers_;
};

TEST_F(OutlierTest, OriginalHasNoOutliers) {
  auto model = LoadModel();
  auto stats = MeasureOutliers(*model, Windows(8), 64.0);
  ASSERT_TRUE(stats.ok()) << stats.status();
  for (double r : stats->top_ratio) {
    EXPECT_GT(r, 1.0);
    EXPECT_LT(r, 16.0);
  }
  auto chosen = ChooseOutlierTokens(*stats, kBos);
  EXPECT_EQ(chosen.count, 0);
  EXPECT_EQ(chosen.prefix_ids, std::vector<int32_t>{kBos});
}

TEST_F(OutlierTest, VariantKeepsPerplexity) {
  auto original = LoadModel();
  auto variant = LoadModel(*variant_dir_);
  ASSERT_TRUE(original && variant);
  EXPECT_EQ(variant->config().hidden_size, 80);
  WindowEval eval;
  eval.seqlen = 256;
  eval.max_windows = 20;
  auto a = EvaluateWindows(*original, *tokens_, eval);
  auto b = EvaluateWindows(*variant, *tokens_, eval);
  ASSERT_TRUE(a.ok() && b.ok());
  EXPECT_NEAR(b->perplexity / a->perplexity, 1.0, 0.10);
}

TEST_F(OutlierTest, DetectsExactlyThePlantedTokens) {
  auto variant = LoadModel(*variant_dir_);
  ASSERT_TRUE(variant);
  const auto windows = Windows(8);
  auto stats = MeasureOutliers(*variant, windows, 64.0);
  ASSERT_TRUE(stats.ok()) << stats.status();
  int above = 0;
  for (double r : stats->top_ratio) above += r > 64.0;
  EXPECT_GE(above, 3);
  for (const auto& [id, count] : stats->token_counts) {
    EXPECT_TRUE(id == markers_[0] || id == markers_[1]) << "unexpected outlier token " << id;
  }
  auto chosen = ChooseOutlierTokens(*stats, kBos);
  EXPECT_GE(chosen.count, 2);
  ASSERT_EQ(chosen.token_ids.size(), 2u);  // only two distinct ids are outliers
  EXPECT_EQ(std::set<int32_t>(chosen.token_ids.begin(), chosen.token_ids.end()),
            std::set<int32_t>(markers_.begin(), markers_.end()));
  EXPECT_EQ(chosen.prefix_ids.back(), kBos);

  // With the prefix in the KV cache the outliers are gone.
  auto prefix = BuildPrefixCache(*variant, chosen.prefix_ids, kBos);
  ASSERT_TRUE(prefix.ok());
  auto after = MeasureOutliers(*variant, windows, 64.0, &prefix->kv);
  ASSERT_TRUE(after.ok());
  for (size_t l = 0; l < after->top_ratio.size(); ++l) {
    EXPECT_LT(after->top_ratio[l], 16.0) << l;
  }
  EXPECT_TRUE(after->token_counts.empty());
}

// prefix KV + tokens gives the logits of prefix+tokens in one pass (rotated, R3 online).
TEST_F(OutlierTest, PrefixKvMatchesOnePass) {
  auto model = LoadModel(*variant_dir_);
  RotationOptions options;
  options.down_online_had = true;
  options.qk_online_had = true;
  ASSERT_TRUE(RotateModel(*model, options).ok());
  const std::vector<int32_t> prefix_ids = {markers_[0], markers_[1], kBos};
  std::vector<int32_t> text(tokens_->begin() + 10, tokens_->begin() + 110);
  auto prefix = BuildPrefixCache(*model, prefix_ids, kBos);
  ASSERT_TRUE(prefix.ok());
  auto split = testing::Logits(*model, text, &prefix->kv);
  std::vector<int32_t> joined = prefix_ids;
  joined.insert(joined.end(), text.begin(), text.end());
  auto whole = testing::Logits(*model, joined);
  EXPECT_LT((whole.narrow(0, 3, text.size()) - split).abs().max().item<float>(), 1e-3f);
  EXPECT_LT((whole[2] - prefix->last_logits).abs().max().item<float>(), 1e-3f);
}

// A window that starts with BOS after a prefix ending in BOS is scored without a second BOS.
TEST_F(OutlierTest, NoDoubleBos) {
  auto model = LoadModel();
  std::vector<int32_t> window(tokens_->begin(), tokens_->begin() + 64);
  ASSERT_EQ(window[0], kBos);
  const std::vector<int32_t> prefix_ids = {markers_[0], kBos};
  auto prefix = BuildPrefixCache(*model, prefix_ids, kBos);
  ASSERT_TRUE(prefix.ok());
  WindowEval eval;
  eval.seqlen = 64;
  eval.prefix = &*prefix;
  auto measured = EvaluateWindows(*model, window, eval);
  ASSERT_TRUE(measured.ok()) << measured.status();
  EXPECT_EQ(measured->predictions, 63);
  // Reference: one pass over prefix + window without its BOS, scoring window[1..].
  std::vector<int32_t> joined = prefix_ids;
  joined.insert(joined.end(), window.begin() + 1, window.end());
  auto logits = testing::Logits(*model, joined);
  auto log_probs = torch::log_softmax(logits.narrow(0, 1, 63), -1);
  double nll = 0;
  for (int i = 0; i < 63; ++i) nll -= log_probs[i][window[i + 1]].item<double>();
  EXPECT_NEAR(measured->mean_nll, nll / 63, 1e-4);
}

}  // namespace
}  // namespace quantd::quant
