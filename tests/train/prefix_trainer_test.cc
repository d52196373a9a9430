#include "worker/train/prefix_trainer.h"

#include <algorithm>

#include "gtest/gtest.h"
#include "tests/common/dtype_transfer.h"
#include "tests/train/train_fixture.h"

namespace quantd::train {
namespace {

using testing::LoadModel;
using testing::Recorder;
using testing::StoryTokens;
using testing::Windows;

double MaxAbs(const std::vector<torch::Tensor>& layers) {
  double m = 0;
  for (const auto& t : layers) m = std::max(m, t.abs().max().item<double>());
  return m;
}

class PrefixTrainerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    model_ = LoadModel();
    ASSERT_NE(model_, nullptr);
    const auto tokens = StoryTokens();
    train_ = Windows(tokens, 8, 64, 0);
    val_ = Windows(tokens, 4, 64, 2000);
    options_.prefix_len = 4;
    options_.lr = 1e-2;
    options_.epochs = 6;
    options_.batch_size = 4;
    options_.init_token_ids = {1};  // BOS, as a detected prefix without outliers
  }
  std::unique_ptr<model::LlamaModel> model_;
  std::vector<std::vector<int32_t>> train_, val_;
  PrefixTrainOptions options_;
};

TEST_F(PrefixTrainerTest, LossFallsAndTheLearnedPrefixTamesActivationsAtLeastAsWellAsBos) {
  Recorder recorder;
  auto result = TrainPrefix(*model_, train_, val_, options_, recorder.Callbacks());
  ASSERT_TRUE(result.ok()) << result.status();

  // One train point per step (2 per epoch) with every component and a decaying rate.
  const auto train_points = recorder.Split("train");
  ASSERT_EQ(train_points.size(), 12u);
  EXPECT_EQ(result->steps, 12);
  for (size_t i = 0; i < train_points.size(); ++i) {
    EXPECT_EQ(train_points[i].step, static_cast<int64_t>(i));
    EXPECT_EQ(train_points[i].block, -1);
    EXPECT_EQ(train_points[i].components.size(), 4u);
    if (i > 0) {
      EXPECT_LT(train_points[i].learning_rate, train_points[i - 1].learning_rate);
    }
  }
  EXPECT_DOUBLE_EQ(train_points[0].learning_rate, options_.lr);
  const auto val_points = recorder.Split("val");
  ASSERT_EQ(val_points.size(), 6u);
  EXPECT_LT(val_points.back().loss, result->initial_loss);
  EXPECT_LT(result->best_loss, result->initial_loss);
  EXPECT_LT(train_points.back().loss, train_points.front().loss);

  // The model stayed frozen.
  EXPECT_FALSE(model_->embed_tokens.requires_grad());
  EXPECT_FALSE(model_->embed_tokens.grad().defined());

  ASSERT_EQ(result->embeddings.sizes(), (std::vector<int64_t>{4, model_->config().hidden_size}));
  ASSERT_EQ(result->nearest_ids.size(), 4u);
  EXPECT_EQ(result->init_ids[0], 1);

  const torch::Tensor bos = model_->embed_tokens[1].unsqueeze(0);
  const double with_bos = MaxAbs(NonPrefixActivations(*model_, bos, val_));
  const double with_learned = MaxAbs(NonPrefixActivations(*model_, result->embeddings, val_));
  const double without = MaxAbs(NonPrefixActivations(*model_, torch::Tensor(), val_));
  EXPECT_LE(with_learned, with_bos) << "no prefix: " << without;
  RecordProperty("max_abs_no_prefix", std::to_string(without));
  RecordProperty("max_abs_bos", std::to_string(with_bos));
  RecordProperty("max_abs_learned", std::to_string(with_learned));
  RecordProperty("loss_initial_best",
                 std::to_string(result->initial_loss) + " " + std::to_string(result->best_loss));
}

// Block-wise back-propagation trains the same prefix as one backward over the whole pass, for
// the residual output and for an inner site with a layer between the targets that is not one.
TEST_F(PrefixTrainerTest, BlockwiseBackwardTrainsTheSamePrefix) {
  options_.epochs = 2;
  for (const auto site :
       {model::ActivationSite::kBlockOutput, model::ActivationSite::kDownProjInput}) {
    options_.site = site;
    options_.target_layers =
        site == model::ActivationSite::kBlockOutput ? std::vector<int>{} : std::vector<int>{1, 3};
    Recorder whole_recorder, blockwise_recorder;
    options_.blockwise_backward = false;
    auto whole = TrainPrefix(*LoadModel(), train_, val_, options_, whole_recorder.Callbacks());
    options_.blockwise_backward = true;
    auto blockwise =
        TrainPrefix(*LoadModel(), train_, val_, options_, blockwise_recorder.Callbacks());
    ASSERT_TRUE(whole.ok()) << whole.status();
    ASSERT_TRUE(blockwise.ok()) << blockwise.status();
    const auto a = whole_recorder.Split("train");
    const auto b = blockwise_recorder.Split("train");
    ASSERT_EQ(a.size(), b.size());
    ASSERT_EQ(a.size(), 4u);
    for (size_t i = 0; i < a.size(); ++i) {
      EXPECT_NEAR(b[i].loss, a[i].loss, 1e-5 * std::abs(a[i].loss)) << i;
    }
    EXPECT_GT(std::abs(a.back().loss - a.front().loss), 1e-3) << "the prefix did not move";
    EXPECT_TRUE(torch::allclose(blockwise->embeddings, whole->embeddings, 1e-4, 1e-5))
        << (blockwise->embeddings - whole->embeddings).abs().max();
  }
}

// With every block streamed (host memory simulated as float64), block-wise training computes
// exactly what it does on a resident model and leaves every block in storage.
TEST_F(PrefixTrainerTest, BlockwiseBackwardOnStreamedBlocks) {
  options_.epochs = 2;
  options_.blockwise_backward = true;
  auto resident = TrainPrefix(*LoadModel(), train_, val_, options_);
  auto streamed_model = LoadModel();
  const int layers = static_cast<int>(streamed_model->blocks.size());
  auto counts = std::make_shared<test_data::TransferCounts>();
  ASSERT_TRUE(streamed_model->StreamLastBlocks(layers, test_data::DtypeTransfer(counts)).ok());
  auto streamed = TrainPrefix(*streamed_model, train_, val_, options_);
  ASSERT_TRUE(resident.ok()) << resident.status();
  ASSERT_TRUE(streamed.ok()) << streamed.status();
  EXPECT_TRUE(torch::equal(streamed->embeddings, resident->embeddings));
  EXPECT_DOUBLE_EQ(streamed->best_loss, resident->best_loss);
  for (int l = 0; l < layers; ++l) EXPECT_TRUE(test_data::BlockInStorage(*streamed_model, l));
  EXPECT_GT(counts->to_compute, 0);
}

TEST_F(PrefixTrainerTest, InitialisationOrderAndNearestTokens) {
  options_.epochs = 0;
  options_.init_token_ids = {403, 300};
  auto tokenizer = model::LoadTokenizer(testing::StoriesDir());
  ASSERT_TRUE(tokenizer.ok());
  options_.tokenizer = tokenizer->get();
  auto result = TrainPrefix(*model_, train_, {}, options_);
  ASSERT_TRUE(result.ok()) << result.status();
  // Given ids first, then the most frequent window tokens.
  std::map<int32_t, int> counts;
  for (const auto& w : train_) {
    for (int32_t id : w) ++counts[id];
  }
  std::vector<std::pair<int, int32_t>> order;
  for (const auto& [id, n] : counts) {
    if (id != 403 && id != 300) order.emplace_back(-n, id);
  }
  std::sort(order.begin(), order.end());
  EXPECT_EQ(result->init_ids, (std::vector<int32_t>{403, 300, order[0].second, order[1].second}));
  // Untrained rows are their tokens' embeddings: nearest is themselves at cosine 1.
  EXPECT_EQ(result->nearest_ids, result->init_ids);
  for (double c : result->nearest_cosine) EXPECT_NEAR(c, 1.0, 1e-5);
  ASSERT_EQ(result->nearest_text.size(), 4u);
  EXPECT_EQ(result->nearest_text[1], *(*tokenizer)->Decode({300}));
  EXPECT_EQ(result->best_epoch, -1);
}

TEST_F(PrefixTrainerTest, RandomRowsAreSeededWhenTokensRunOut) {
  options_.epochs = 0;
  options_.prefix_len = 3;
  options_.init_token_ids = {};
  const std::vector<std::vector<int32_t>> one_token(4, std::vector<int32_t>(8, 42));
  auto a = TrainPrefix(*model_, one_token, {}, options_);
  auto b = TrainPrefix(*model_, one_token, {}, options_);
  options_.seed = 43;
  auto c = TrainPrefix(*model_, one_token, {}, options_);
  ASSERT_TRUE(a.ok() && b.ok() && c.ok());
  EXPECT_EQ(a->init_ids, (std::vector<int32_t>{42, -1, -1}));
  EXPECT_TRUE(torch::equal(a->embeddings, b->embeddings));
  EXPECT_FALSE(torch::equal(a->embeddings, c->embeddings));
}

TEST_F(PrefixTrainerTest, CancellationStopsWithinOneStep) {
  int asked = 0;
  Recorder recorder;
  TrainCallbacks callbacks = recorder.Callbacks();
  callbacks.cancelled = [&] { return ++asked > 3; };
  auto result = TrainPrefix(*model_, train_, val_, options_, callbacks);
  EXPECT_EQ(result.status().code(), absl::StatusCode::kCancelled);
  EXPECT_EQ(recorder.Split("train").size(), 3u);
}

TEST_F(PrefixTrainerTest, BadInputsAreInvalidArguments) {
  options_.target_layers = {99};
  EXPECT_EQ(TrainPrefix(*model_, train_, val_, options_).status().code(),
            absl::StatusCode::kInvalidArgument);
  options_.target_layers = {};
  EXPECT_EQ(TrainPrefix(*model_, {}, val_, options_).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(TrainPrefix(*model_, {{1, 2}, {3}}, {}, options_).status().code(),
            absl::StatusCode::kInvalidArgument);
  options_.init_token_ids = {100000};
  EXPECT_EQ(TrainPrefix(*model_, train_, val_, options_).status().code(),
            absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace quantd::train
