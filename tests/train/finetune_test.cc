#include "worker/train/finetune.h"

#include <cmath>
#include <filesystem>

#include "gtest/gtest.h"
#include "tests/train/train_fixture.h"
#include "worker/eval/perplexity.h"
#include "worker/model/dtype_names.h"
#include "worker/train/checkpoint.h"
#include "worker/train/ste_block.h"

namespace quantd::train {
namespace {

using testing::LoadModel;
using testing::Recorder;
using testing::StoryTokens;
using testing::Windows;

// Multiplies its inner layer's output by NaN from the `after`-th forward pass with autograd on
// (training steps), so that evaluation passes stay finite.
class PoisonLinear : public model::LinearLayer {
 public:
  PoisonLinear(std::shared_ptr<model::LinearLayer> inner, int after)
      : inner_(std::move(inner)), after_(after) {}
  torch::Tensor Forward(const torch::Tensor& x) override {
    torch::Tensor y = inner_->Forward(x);
    if (torch::GradMode::is_enabled() && ++calls_ > after_) return y * std::nan("");
    return y;
  }
  int64_t in_features() const override { return inner_->in_features(); }
  int64_t out_features() const override { return inner_->out_features(); }
  std::vector<torch::Tensor*> StateTensors() override { return inner_->StateTensors(); }

 private:
  std::shared_ptr<model::LinearLayer> inner_;
  int after_;
  int calls_ = 0;
};

class FinetuneTest : public ::testing::Test {
 protected:
  void SetUp() override {
    tokens_ = StoryTokens();
    train_ = Windows(tokens_, 16, 64, 0);
    val_ = Windows(tokens_, 4, 64, 1200);
    eval_tokens_.assign(tokens_.begin() + 4000, tokens_.end());
    options_.epochs = 3;
    options_.quant_lr = 5e-3;
    options_.weight_lr = 1e-3;
    options_.batch_size = 4;
    ste_.wbits = 4;  // W4, one scale per output channel
  }

  // A fresh model with its [BOS] prefix KV cache.
  std::unique_ptr<model::LlamaModel> Fresh(model::KvCache* prefix) {
    auto model = LoadModel();
    torch::NoGradGuard no_grad;
    auto kv = model->BuildPrefixKv(torch::tensor(std::vector<int64_t>{1}).view({1, 1}));
    EXPECT_TRUE(kv.ok()) << kv.status();
    *prefix = *kv;
    return model;
  }

  double Perplexity(model::LlamaModel& model, const model::KvCache& prefix) {
    eval::PerplexityOptions options;
    options.seqlen = 256;
    options.max_windows = 8;
    options.prefix = &prefix;
    auto result = eval::EvaluatePerplexity(model, eval_tokens_, options);
    EXPECT_TRUE(result.ok()) << result.status();
    return result.ok() ? result->perplexity : 0.0;
  }

  // A fresh model fine-tuned with `options` (W4 STE blocks), and its perplexity after the
  // [BOS] prefix; ppl is 0 when fine-tuning failed.
  struct Tuned {
    absl::StatusOr<FinetuneResult> result;
    double ppl = 0;
  };
  Tuned TuneFresh(const FinetuneOptions& options, Recorder* recorder = nullptr) {
    model::KvCache prefix;
    auto model = Fresh(&prefix);
    Tuned tuned{FinetuneBlocks(*model, &prefix, train_, val_, MakeSteBlockInstaller(ste_), options,
                               recorder != nullptr ? recorder->Callbacks() : TrainCallbacks{})};
    EXPECT_TRUE(tuned.result.ok()) << tuned.result.status();
    if (tuned.result.ok()) tuned.ppl = Perplexity(*model, prefix);
    return tuned;
  }

  std::vector<int32_t> tokens_, eval_tokens_;
  std::vector<std::vector<int32_t>> train_, val_;
  FinetuneOptions options_;
  SteBlockOptions ste_;
};

TEST_F(FinetuneTest, W4MseFallsInEveryBlockAndPerplexityImproves) {
  model::KvCache prefix;
  auto fp = Fresh(&prefix);
  const double fp_ppl = Perplexity(*fp, prefix);

  FinetuneOptions none = options_;
  none.epochs = 0;
  const double w4_ppl = TuneFresh(none).ppl;

  Recorder recorder;
  const Tuned tuned = TuneFresh(options_, &recorder);
  const auto& result = tuned.result;
  ASSERT_TRUE(result.ok());
  const double tuned_ppl = tuned.ppl;

  ASSERT_EQ(result->blocks.size(), 5u);
  for (const BlockReport& b : result->blocks) {
    EXPECT_LT(b.final_val_loss, b.initial_val_loss) << "block " << b.block;
    EXPECT_EQ(b.steps, 12);
    EXPECT_FALSE(b.rolled_back);
  }
  EXPECT_GT(w4_ppl, fp_ppl);
  EXPECT_LT(tuned_ppl, w4_ppl);
  RecordProperty("ppl_fp_w4_w4ft", absl::StrCat(fp_ppl, " ", w4_ppl, " ", tuned_ppl));
  EXPECT_GT(result->peak_training_bytes, 0);

  // 12 train points and 3 val points per block, steps counted within the block.
  EXPECT_EQ(recorder.Split("train").size(), 60u);
  EXPECT_EQ(recorder.Split("val").size(), 15u);
  int64_t expected_step = 0;
  int block = 0;
  for (const LossPoint& p : recorder.Split("train")) {
    if (p.block != block) {
      EXPECT_EQ(p.block, block + 1);
      block = p.block;
      expected_step = 0;
    }
    EXPECT_EQ(p.phase, TrainPhase::kFinetune);
    EXPECT_EQ(p.step, expected_step++);
  }
}

TEST_F(FinetuneTest, ResumedRunEqualsAnUninterruptedOne) {
  options_.epochs = 2;
  const std::string dir = ::testing::TempDir() + "/finetune_resume";
  std::filesystem::remove_all(dir);
  model::KvCache prefix;

  auto whole = Fresh(&prefix);
  auto expected =
      FinetuneBlocks(*whole, &prefix, train_, val_, MakeSteBlockInstaller(ste_), options_);
  ASSERT_TRUE(expected.ok()) << expected.status();
  const double expected_ppl = Perplexity(*whole, prefix);

  FinetuneOptions with_dir = options_;
  with_dir.checkpoint_dir = dir;
  with_dir.fingerprint = Fingerprint("spec-a", *whole);
  {  // Interrupted as soon as block 2 starts training.
    auto model = Fresh(&prefix);
    bool stop = false;
    TrainCallbacks callbacks;
    callbacks.on_loss = [&](const LossPoint& p) { stop = stop || p.block == 2; };
    callbacks.cancelled = [&] { return stop; };
    auto run = FinetuneBlocks(*model, &prefix, train_, val_, MakeSteBlockInstaller(ste_), with_dir,
                              callbacks);
    ASSERT_EQ(run.status().code(), absl::StatusCode::kCancelled);
  }
  auto resumed_model = Fresh(&prefix);
  Recorder recorder;
  auto resumed = FinetuneBlocks(*resumed_model, &prefix, train_, val_, MakeSteBlockInstaller(ste_),
                                with_dir, recorder.Callbacks());
  ASSERT_TRUE(resumed.ok()) << resumed.status();
  EXPECT_EQ(resumed->resumed_at_block, 2);
  EXPECT_TRUE(resumed->blocks[1].from_checkpoint);
  EXPECT_FALSE(resumed->blocks[2].from_checkpoint);
  EXPECT_EQ(recorder.points.front().block, 2);
  ASSERT_FALSE(recorder.logs.empty());  // said when it starts, not after the work
  EXPECT_NE(recorder.logs[0].find("resuming fine-tuning at block 2: blocks 0..1"),
            std::string::npos)
      << recorder.logs[0];
  for (size_t i = 0; i < 5; ++i) {
    EXPECT_NEAR(resumed->blocks[i].final_val_loss, expected->blocks[i].final_val_loss,
                1e-6 + 1e-4 * expected->blocks[i].final_val_loss);
  }
  EXPECT_NEAR(Perplexity(*resumed_model, prefix), expected_ppl, 1e-4 * expected_ppl);

  // Another spec's checkpoint is ignored, with a log line.
  FinetuneOptions other = with_dir;
  other.fingerprint = Fingerprint("spec-b", *whole);
  other.epochs = 0;
  auto fresh_model = Fresh(&prefix);
  Recorder other_recorder;
  auto fresh = FinetuneBlocks(*fresh_model, &prefix, train_, val_, MakeSteBlockInstaller(ste_),
                              other, other_recorder.Callbacks());
  ASSERT_TRUE(fresh.ok()) << fresh.status();
  EXPECT_EQ(fresh->resumed_at_block, 0);
  ASSERT_FALSE(other_recorder.logs.empty());
  EXPECT_NE(other_recorder.logs[0].find("ignoring checkpoint"), std::string::npos);
}

BlockInstaller PoisonedInstaller(const SteBlockOptions& ste, int poisoned_block, int after) {
  BlockInstaller inner = MakeSteBlockInstaller(ste);
  return [=](model::LlamaModel& model, int layer) {
    auto block = inner(model, layer);
    if (block.ok() && layer == poisoned_block) {
      auto& slot = model.blocks[layer].down_proj;
      slot = std::make_shared<PoisonLinear>(slot, after);
    }
    return block;
  };
}

TEST_F(FinetuneTest, NonFiniteLossRollsTheBlockBackAndGoesOn) {
  model::KvCache prefix;
  auto model = Fresh(&prefix);
  Recorder recorder;
  // Block 1 diverges at its 6th step (epoch 1): it returns to its state after epoch 0.
  auto result = FinetuneBlocks(*model, &prefix, train_, val_, PoisonedInstaller(ste_, 1, 5),
                               options_, recorder.Callbacks());
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_TRUE(result->blocks[1].rolled_back);
  EXPECT_FALSE(result->blocks[2].rolled_back);
  EXPECT_EQ(result->blocks.size(), 5u);
  double epoch0_val = -1;
  for (const LossPoint& p : recorder.Split("val")) {
    if (p.block == 1 && p.epoch == 0) epoch0_val = p.loss;
    EXPECT_FALSE(p.block == 1 && p.epoch > 0);
  }
  EXPECT_NEAR(result->blocks[1].final_val_loss, epoch0_val, 1e-6);
  // One warning, for block 1 (other blocks may log that they kept an earlier epoch's state).
  std::vector<std::string> warnings;
  for (const std::string& line : recorder.logs) {
    if (line.rfind("warning:", 0) == 0) warnings.push_back(line);
  }
  ASSERT_EQ(warnings.size(), 1u);
  EXPECT_NE(warnings[0].find("block 1"), std::string::npos);
  EXPECT_TRUE(std::isfinite(Perplexity(*model, prefix)));

  // Beyond the allowed number of failures the run is a numerical failure.
  auto strict_model = Fresh(&prefix);
  options_.max_numerical_failures = 0;
  auto strict =
      FinetuneBlocks(*strict_model, &prefix, train_, val_, PoisonedInstaller(ste_, 1, 5), options_);
  EXPECT_TRUE(IsNumericalFailure(strict.status())) << strict.status();
}

// max_numerical_failures holds for the whole run, a restart included: a block that diverged
// before the restart still counts.
TEST_F(FinetuneTest, NumericalFailuresCountAcrossAResume) {
  options_.epochs = 2;
  options_.max_numerical_failures = 1;
  options_.checkpoint_dir = ::testing::TempDir() + "/finetune_failures_resume";
  std::filesystem::remove_all(options_.checkpoint_dir);
  model::KvCache prefix;
  {  // Block 1 diverges (one failure, allowed); interrupted as soon as block 3 starts training.
    auto model = Fresh(&prefix);
    options_.fingerprint = Fingerprint("spec-failures", *model);
    bool stop = false;
    TrainCallbacks callbacks;
    callbacks.on_loss = [&](const LossPoint& p) { stop = stop || p.block == 3; };
    callbacks.cancelled = [&] { return stop; };
    auto run = FinetuneBlocks(*model, &prefix, train_, val_, PoisonedInstaller(ste_, 1, 5),
                              options_, callbacks);
    ASSERT_EQ(run.status().code(), absl::StatusCode::kCancelled) << run.status();
  }
  // Resumed at block 3, which diverges too: the second failure is beyond the limit.
  auto model = Fresh(&prefix);
  auto resumed =
      FinetuneBlocks(*model, &prefix, train_, val_, PoisonedInstaller(ste_, 3, 5), options_);
  EXPECT_TRUE(IsNumericalFailure(resumed.status())) << resumed.status();
  std::filesystem::remove_all(options_.checkpoint_dir);
}

TEST_F(FinetuneTest, BlocksWhoseValidationLossRisesKeepTheirUntrainedState) {
  // Learning rates far too high: AdamW moves every weight and scale by about lr per step, and
  // every block ends its last epoch above its starting validation loss.
  options_.epochs = 2;
  options_.weight_lr = options_.quant_lr = 0.02;
  FinetuneOptions untrained = options_;
  untrained.epochs = 0;
  const double untrained_ppl = TuneFresh(untrained).ppl;

  FinetuneOptions last_state = options_;
  last_state.keep_best_state = false;
  const Tuned diverged = TuneFresh(last_state);
  ASSERT_TRUE(diverged.result.ok());
  ASSERT_GT(diverged.result->blocks[0].final_val_loss, diverged.result->blocks[0].initial_val_loss);

  Recorder recorder;
  const Tuned kept = TuneFresh(options_, &recorder);
  const auto& result = kept.result;
  ASSERT_TRUE(result.ok());
  ASSERT_EQ(result->blocks.size(), 5u);
  ASSERT_EQ(recorder.logs.size(), 5u);
  for (const BlockReport& b : result->blocks) {
    EXPECT_EQ(b.kept_epoch, -1) << "block " << b.block;
    EXPECT_EQ(b.last_epoch, 1) << "block " << b.block;
    EXPECT_EQ(b.steps, 8);
    EXPECT_FALSE(b.rolled_back);
    EXPECT_NEAR(b.final_val_loss, b.initial_val_loss, 1e-6 * b.initial_val_loss)
        << "block " << b.block;
    EXPECT_NE(recorder.logs[b.block].find("block " + std::to_string(b.block) + ":"),
              std::string::npos);
    EXPECT_NE(recorder.logs[b.block].find("before fine-tuning; kept that state"), std::string::npos)
        << recorder.logs[b.block];
  }
  // The kept states are whole: the model computes what the untrained one does.
  EXPECT_NEAR(kept.ppl, untrained_ppl, 1e-5 * untrained_ppl);
  EXPECT_LT(kept.ppl, 0.5 * diverged.ppl);
  RecordProperty("ppl_untrained_kept_diverged",
                 absl::StrCat(untrained_ppl, " ", kept.ppl, " ", diverged.ppl));
}

TEST_F(FinetuneTest, CancellationStopsWithinOneStep) {
  model::KvCache prefix;
  auto model = Fresh(&prefix);
  int asked = 0;
  Recorder recorder;
  TrainCallbacks callbacks = recorder.Callbacks();
  callbacks.cancelled = [&] { return ++asked > 5; };
  auto result = FinetuneBlocks(*model, &prefix, train_, val_, MakeSteBlockInstaller(ste_), options_,
                               callbacks);
  EXPECT_EQ(result.status().code(), absl::StatusCode::kCancelled);
  EXPECT_EQ(recorder.Split("train").size(), 5u);
}

TEST_F(FinetuneTest, WeightsStayFixedWithoutWeightLr) {
  model::KvCache prefix;
  auto model = Fresh(&prefix);
  const torch::Tensor original =
      std::dynamic_pointer_cast<model::DenseLinear>(model->blocks[0].q_proj)->weight.clone();
  options_.weight_lr = 0;
  torch::Tensor master;  // block 0's master weight after its last step
  TrainCallbacks callbacks;
  callbacks.on_loss = [&](const LossPoint& p) {
    if (p.block != 0 || p.split != "train") return;
    master = std::dynamic_pointer_cast<SteLinear>(model->blocks[0].q_proj)->weight.detach().clone();
  };
  auto result = FinetuneBlocks(*model, &prefix, train_, val_, MakeSteBlockInstaller(ste_), options_,
                               callbacks);
  ASSERT_TRUE(result.ok()) << result.status();
  ASSERT_TRUE(master.defined());
  EXPECT_TRUE(torch::equal(master, original));
  EXPECT_LT(result->blocks[0].final_val_loss, result->blocks[0].initial_val_loss);
}

// quant.activation_clipping: dynamic inputs train their clipping factor only when asked; without
// it the factor keeps its initial value while the weight scales still train.
TEST_F(FinetuneTest, ClippingFactorsTrainOnlyWhenAsked) {
  ste_.input_bits = 8;
  ste_.input_dynamic = true;
  ste_.activation_clip = 0.9f;
  options_.epochs = 1;
  for (bool learn : {false, true}) {
    SCOPED_TRACE(learn ? "learned clipping" : "fixed clipping");
    ste_.learn_activation_clip = learn;
    model::KvCache prefix;
    auto model = Fresh(&prefix);
    auto result =
        FinetuneBlocks(*model, &prefix, train_, val_, MakeSteBlockInstaller(ste_), options_);
    ASSERT_TRUE(result.ok()) << result.status();
    auto ste = std::dynamic_pointer_cast<SteLinear>(model->blocks[0].gate_proj);
    ASSERT_NE(ste, nullptr);
    const float clip = ste->input_scale.item<float>();
    if (learn) {
      EXPECT_NE(clip, 0.9f);
    } else {
      EXPECT_EQ(clip, 0.9f);
    }
    EXPECT_LT(result->blocks[0].final_val_loss, result->blocks[0].initial_val_loss);
  }
}

// A learned scale that AdamW drove to zero (or below) must not turn the layer into NaN or flip
// its grid: it is held at a tiny positive value, and its gradient still flows.
TEST_F(FinetuneTest, ScalesDrivenToZeroStayPositive) {
  auto model = LoadModel();
  auto block = MakeSteBlockInstaller(ste_)(*model, 0);
  ASSERT_TRUE(block.ok()) << block.status();
  auto layer = std::dynamic_pointer_cast<SteLinear>(model->blocks[0].q_proj);
  ASSERT_NE(layer, nullptr);
  layer->weight_scales = torch::zeros_like(layer->weight_scales).requires_grad_(true);
  const torch::Tensor x = torch::randn({2, 5, layer->in_features()});
  const torch::Tensor y = layer->Forward(x);
  EXPECT_TRUE(torch::isfinite(y).all().item<bool>());
  y.pow(2).sum().backward();
  ASSERT_TRUE(layer->weight_scales.grad().defined());
  EXPECT_TRUE(torch::isfinite(layer->weight_scales.grad()).all().item<bool>());
  layer->Bake();
  EXPECT_GT(layer->weight_scales.min().item<double>(), 0.0);
  EXPECT_TRUE(torch::isfinite(layer->baked).all().item<bool>());
}

// A 16-bit model's blocks train fp32 master weights: AdamW steps of 1e-5 would round away in
// bfloat16 weights of ~0.05 (half an ulp is 1.2e-4). The baked weight returns to the model's
// dtype. (float16 also scales the loss: loss_scaler_test.cc.)
void ExpectHalfPrecisionBlocksTrain(torch::Device device, torch::ScalarType dtype,
                                    const std::vector<std::vector<int32_t>>& train,
                                    const std::vector<std::vector<int32_t>>& val,
                                    FinetuneOptions options, const SteBlockOptions& ste) {
  model::LoadOptions load;
  load.dtype = dtype;
  load.device = device;
  auto loaded = model::LlamaModel::Load(testing::StoriesDir(), load);
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  model::LlamaModel& model = **loaded;
  model::KvCache prefix;
  {
    torch::NoGradGuard no_grad;
    auto kv = model.BuildPrefixKv(torch::tensor(std::vector<int64_t>{1}).view({1, 1}));
    ASSERT_TRUE(kv.ok()) << kv.status();
    prefix = *kv;
  }
  const torch::Tensor original =
      std::dynamic_pointer_cast<model::DenseLinear>(model.blocks[0].up_proj)->weight.clone();
  options.epochs = 1;
  options.quant_lr = 0;
  options.weight_lr = 1e-5;
  options.keep_best_state = false;
  // The master weight as it stands after block 0's last step.
  torch::Tensor master;
  TrainCallbacks callbacks;
  callbacks.on_loss = [&](const LossPoint& p) {
    if (p.block != 0 || p.split != "train") return;
    master = std::dynamic_pointer_cast<SteLinear>(model.blocks[0].up_proj)->weight.detach().clone();
  };
  auto result =
      FinetuneBlocks(model, &prefix, train, val, MakeSteBlockInstaller(ste), options, callbacks);
  ASSERT_TRUE(result.ok()) << result.status();
  ASSERT_TRUE(master.defined());
  EXPECT_EQ(master.scalar_type(), torch::kFloat32);
  const double moved = (master != original.to(master.device(), torch::kFloat32))
                           .to(torch::kFloat64)
                           .mean()
                           .item<double>();
  EXPECT_GT(moved, 0.9) << "share of weights the steps changed";
  auto tuned = std::dynamic_pointer_cast<SteLinear>(model.blocks[0].up_proj);
  ASSERT_NE(tuned, nullptr);
  // Finished blocks drop the fp32 master: the weight is the baked one, in the model's dtype.
  EXPECT_EQ(tuned->weight.scalar_type(), dtype);
  EXPECT_EQ(tuned->baked.scalar_type(), dtype);
  // What a checkpoint restores (the 16-bit weight as a new master) bakes to the same weight.
  SteLinear restored = *tuned;
  restored.weight = tuned->weight.to(torch::kFloat32).clone();
  restored.baked = torch::Tensor();
  restored.Bake();
  EXPECT_TRUE(torch::equal(restored.baked, tuned->baked));
  EXPECT_TRUE(torch::isfinite(tuned->baked).all().item<bool>());
  for (const BlockReport& block : result->blocks) {
    EXPECT_TRUE(std::isfinite(block.final_val_loss)) << "block " << block.block;
  }
}

TEST_F(FinetuneTest, Bfloat16BlocksTrainTheirWeightsInFloat32) {
  ExpectHalfPrecisionBlocksTrain(torch::kCPU, torch::kBFloat16, train_, val_, options_, ste_);
}

TEST_F(FinetuneTest, HalfPrecisionBlocksTrainOnCuda_CUDA) {
  if (!torch::cuda::is_available()) GTEST_SKIP() << "no CUDA device";
  for (auto dtype : {torch::kBFloat16, torch::kHalf}) {
    SCOPED_TRACE(model::DTypeName(dtype));
    ExpectHalfPrecisionBlocksTrain(torch::Device(torch::kCUDA, 0), dtype, train_, val_, options_,
                                   ste_);
  }
}

}  // namespace
}  // namespace quantd::train
