// Block streaming on stories260K, with "host memory" simulated as float64 copies
// (tests/common/dtype_transfer.h): a streamed model computes exactly what a resident one does,
// only the running block is on the compute side, what changes under a lease is kept, a failed
// copy leaves nothing half-moved, and gradients flow through streamed blocks.
#include "worker/model/block_streaming.h"

#include <memory>
#include <stdexcept>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/common/dtype_transfer.h"
#include "tests/model/test_dirs.h"
#include "worker/model/llama.h"

namespace quantd::model {
namespace {

using test_data::BlockInStorage;
using test_data::DtypeTransfer;
using test_data::TransferCounts;
using ::testing::HasSubstr;

std::unique_ptr<LlamaModel> Load(int streamed_blocks = 0) {
  LoadOptions options;
  options.streamed_blocks = streamed_blocks;
  auto model = LlamaModel::Load(testing::Stories260K(), options);
  EXPECT_TRUE(model.ok()) << model.status();
  return model.ok() ? std::move(model).value() : nullptr;
}

torch::Tensor Ids() {
  return torch::tensor(std::vector<int64_t>{1, 403, 407, 261, 300, 17, 99, 385}, torch::kInt64)
      .view({1, -1});
}

torch::Tensor Logits(LlamaModel& model, ActivationObserver* observer = nullptr) {
  torch::NoGradGuard no_grad;
  ForwardRequest request;
  request.input_ids = Ids();
  request.observer = observer;
  auto result = model.Forward(request);
  EXPECT_TRUE(result.ok()) << result.status();
  return result.ok() ? result->logits : torch::Tensor();
}

class BlockStreamingTest : public ::testing::Test {
 protected:
  void SetUp() override {
    resident_ = Load();
    streamed_ = Load();
    ASSERT_NE(resident_, nullptr);
    ASSERT_NE(streamed_, nullptr);
    layers_ = static_cast<int>(streamed_->blocks.size());
    ASSERT_TRUE(streamed_->StreamLastBlocks(layers_ - 1, DtypeTransfer(counts_)).ok());
  }

  std::unique_ptr<LlamaModel> resident_, streamed_;
  std::shared_ptr<TransferCounts> counts_ = std::make_shared<TransferCounts>();
  int layers_ = 0;
};

TEST_F(BlockStreamingTest, StreamedModelComputesExactlyWhatTheResidentOneDoes) {
  EXPECT_EQ(streamed_->streamed_blocks(), layers_ - 1);
  EXPECT_FALSE(streamed_->streams_block(0));
  EXPECT_TRUE(streamed_->streams_block(layers_ - 1));
  for (int l = 1; l < layers_; ++l) EXPECT_TRUE(BlockInStorage(*streamed_, l)) << l;
  EXPECT_FALSE(BlockInStorage(*streamed_, 0));
  const int stored = counts_->to_storage;

  const torch::Tensor expected = Logits(*resident_);
  const torch::Tensor logits = Logits(*streamed_);
  EXPECT_EQ(logits.scalar_type(), torch::kFloat32);
  EXPECT_TRUE(torch::equal(logits, expected));
  // 9 tensors per block (2 norms, 7 weights) came over once per pass; nothing changed, so
  // nothing was copied back and the blocks are in storage again.
  EXPECT_EQ(counts_->to_compute, 9 * (layers_ - 1));
  EXPECT_EQ(counts_->to_storage, stored);
  for (int l = 1; l < layers_; ++l) EXPECT_TRUE(BlockInStorage(*streamed_, l)) << l;
}

// Records, at every activation, whether any block other than the running one is on the
// compute side.
class ResidencyObserver : public ActivationObserver {
 public:
  explicit ResidencyObserver(LlamaModel* model) : model_(model) {}
  bool Wants(int, ActivationSite) const override { return true; }
  void Observe(int layer, ActivationSite, const torch::Tensor&) override {
    ++observed;
    for (int l = 1; l < static_cast<int>(model_->blocks.size()); ++l) {
      if (l == layer && BlockInStorage(*model_, l)) ++running_not_there;
      if (l != layer && !BlockInStorage(*model_, l)) ++others_there;
    }
  }
  int observed = 0;
  int running_not_there = 0;
  int others_there = 0;

 private:
  LlamaModel* model_;
};

TEST_F(BlockStreamingTest, OnlyTheRunningBlockIsOnTheComputeSide) {
  ResidencyObserver observer(streamed_.get());
  Logits(*streamed_, &observer);
  EXPECT_EQ(observer.observed, 5 * layers_);
  EXPECT_EQ(observer.running_not_there, 0);
  EXPECT_EQ(observer.others_there, 0);
}

TEST_F(BlockStreamingTest, LeasesNestAndWhatChangesUnderThemIsKept) {
  const int layer = layers_ - 1;
  torch::NoGradGuard no_grad;
  {
    const BlockLease outer = streamed_->LeaseBlock(layer);
    EXPECT_FALSE(BlockInStorage(*streamed_, layer));
    const int copies = counts_->to_compute;
    {
      const BlockLease inner = streamed_->LeaseBlock(layer);
      EXPECT_EQ(counts_->to_compute, copies) << "a nested lease shares the first copy";
    }
    EXPECT_FALSE(BlockInStorage(*streamed_, layer)) << "the outer lease still holds it";

    LlamaBlock& block = streamed_->blocks[layer];
    block.input_norm.mul_(2);  // changed in place
    auto& q = dynamic_cast<DenseLinear&>(*block.q_proj);
    q.weight = q.weight * 3;                          // replaced
    block.down_proj = std::make_shared<DenseLinear>(  // a new layer
        dynamic_cast<DenseLinear&>(*block.down_proj).weight * 0.5);
  }
  EXPECT_TRUE(BlockInStorage(*streamed_, layer));

  LlamaBlock& reference = resident_->blocks[layer];
  reference.input_norm.mul_(2);
  auto& q = dynamic_cast<DenseLinear&>(*reference.q_proj);
  q.weight = q.weight * 3;
  reference.down_proj =
      std::make_shared<DenseLinear>(dynamic_cast<DenseLinear&>(*reference.down_proj).weight * 0.5);
  EXPECT_TRUE(torch::equal(Logits(*streamed_), Logits(*resident_)));
}

TEST_F(BlockStreamingTest, AFailedCopyLeavesTheBlockWhereItWas) {
  auto counts = std::make_shared<TransferCounts>();
  auto fail = std::make_shared<bool>(false);
  BlockTransfer transfer = DtypeTransfer(counts);
  auto copy = transfer.to_compute;
  transfer.to_compute = [copy, counts, fail](const torch::Tensor& t) {
    if (*fail && counts->to_compute >= 4) throw std::runtime_error("CUDA out of memory (test)");
    return copy(t);
  };
  auto model = Load();
  ASSERT_TRUE(model->StreamLastBlocks(layers_, transfer).ok());

  *fail = true;
  torch::NoGradGuard no_grad;
  ForwardRequest request;
  request.input_ids = Ids();
  const auto failed = model->Forward(request);
  ASSERT_FALSE(failed.ok());
  EXPECT_THAT(failed.status().message(), HasSubstr("out of memory"));
  for (int l = 0; l < layers_; ++l) EXPECT_TRUE(BlockInStorage(*model, l)) << l;

  *fail = false;  // no lease was left behind: the next pass copies and computes normally
  EXPECT_TRUE(torch::equal(Logits(*model), Logits(*resident_)));
}

TEST_F(BlockStreamingTest, GradientsFlowThroughStreamedBlocks) {
  auto gradient = [](LlamaModel& model) {
    torch::Tensor embeds = model.Embed(Ids()).detach().requires_grad_(true);
    ForwardRequest request;
    request.input_embeds = embeds;
    auto result = model.Forward(request);
    EXPECT_TRUE(result.ok()) << result.status();
    result->logits.logsumexp(-1).sum().backward();
    return embeds.grad();
  };
  const torch::Tensor expected = gradient(*resident_);
  const torch::Tensor streamed = gradient(*streamed_);
  EXPECT_TRUE(torch::equal(streamed, expected));
  for (int l = 1; l < layers_; ++l) EXPECT_TRUE(BlockInStorage(*streamed_, l)) << l;
}

TEST(BlockStreamingErrorsTest, BadCountsAndSecondCallsAreRefused) {
  auto model = Load();
  const int layers = static_cast<int>(model->blocks.size());
  auto counts = std::make_shared<TransferCounts>();
  EXPECT_EQ(model->StreamLastBlocks(-1, DtypeTransfer(counts)).code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(model->StreamLastBlocks(layers + 1, DtypeTransfer(counts)).code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(model->streamed_blocks(), 0);
  ASSERT_TRUE(model->StreamLastBlocks(2, DtypeTransfer(counts)).ok());
  EXPECT_EQ(model->StreamLastBlocks(1, DtypeTransfer(counts)).code(),
            absl::StatusCode::kFailedPrecondition);

  LoadOptions options;
  options.streamed_blocks = layers + 3;
  const auto refused = LlamaModel::Load(testing::Stories260K(), options);
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(refused.status().message(), HasSubstr("8 streamed blocks"));
}

// LoadOptions::streamed_blocks with the CPU as the compute device (where nothing moves): the
// last blocks are streamed, and the model computes as before.
TEST(BlockStreamingErrorsTest, LoadingWithStreamedBlocksOnTheCpu) {
  auto model = Load(/*streamed_blocks=*/2);
  ASSERT_NE(model, nullptr);
  EXPECT_EQ(model->streamed_blocks(), 2);
  EXPECT_TRUE(model->streams_block(4));
  EXPECT_FALSE(model->streams_block(2));
  EXPECT_TRUE(torch::equal(Logits(*model), Logits(*Load())));
}

}  // namespace
}  // namespace quantd::model
