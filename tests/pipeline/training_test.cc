// RunJob with its training phases on the planted-outlier variant of stories260K, W4A4KV4
// static: loss points of the trainable prefix and of block-wise fine-tuning arrive in order,
// fine-tuning lowers perplexity, and a cancelled job rerun in the same work dir resumes at the
// next unfinished block with the final perplexity of an uninterrupted run.
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iterator>
#include <map>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "tests/common/stories_job.h"
#include "worker/pipeline/run_job.h"
#include "worker/quant/outlier_variant.h"

namespace quantd::pipeline {
namespace {

std::string SharedData(const std::string& relative) {
  return std::string(QUANTD_SHARED_DATA) + "/" + relative;
}

constexpr char kPpl[] = "ppl/tinystories-valid-subset.txt/";

class CollectingSink : public EventSink {
 public:
  absl::Status Emit(const v1::JobEvent& event) override {
    events.push_back(event);
    if (on_event) on_event(event);
    return absl::OkStatus();
  }
  std::vector<v1::LossPoint> Loss(v1::Phase phase, const std::string& split) const {
    std::vector<v1::LossPoint> out;
    for (const auto& e : events) {
      if (e.has_loss() && e.loss().phase() == phase && e.loss().split() == split) {
        out.push_back(e.loss());
      }
    }
    return out;
  }
  bool Logged(const std::string& text) const {
    for (const auto& e : events) {
      if (e.has_log() && e.log().message().find(text) != std::string::npos) return true;
    }
    return false;
  }
  std::vector<v1::JobEvent> events;
  std::function<void(const v1::JobEvent&)> on_event;
};

// One variant model per test process (ctest runs tests in parallel processes).
class TrainingTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new std::string(std::string(QUANTD_BINARY_DIR) + "/tests/pipeline/training-variant-" +
                           std::to_string(getpid()));
    quant::OutlierVariantOptions options;
    options.calibration_text = SharedData("text/tinystories-valid-subset.txt");
    ASSERT_TRUE(quant::WriteOutlierVariant(SharedData("models/stories260K"), *dir_, options).ok());
  }
  static void TearDownTestSuite() {
    std::filesystem::remove_all(*dir_);
    delete dir_;
  }

  static v1::JobSpec Spec(bool trainable_prefix, int finetune_epochs) {
    test_data::StoriesJobShape shape;
    shape.wbits = shape.abits = shape.kvbits = 4;
    shape.calibration_windows = 16;
    shape.validation_windows = 4;
    shape.training_seqlen = 128;
    shape.eval_windows = 12;
    v1::JobSpec spec = test_data::StoriesQuantSpec(*dir_, shape);
    spec.mutable_eval()->set_eval_ppl(false);
    spec.mutable_prefix()->set_trainable(trainable_prefix);
    spec.mutable_prefix()->set_epochs(3);
    spec.mutable_prefix()->set_lr(1e-2);
    auto* training = spec.mutable_training();
    training->set_epochs(finetune_epochs);
    training->set_quant_lr(5e-3);
    training->set_weight_lr(1e-3);
    training->set_batch_size(4);
    return spec;
  }

  static std::string* dir_;
};

std::string* TrainingTest::dir_ = nullptr;

TEST_F(TrainingTest, BothPhasesStreamOrderedLossPointsAndFinetuningLowersPerplexity) {
  CollectingSink sink;
  CancellationToken cancel;
  auto outcome = RunJob(Spec(/*trainable_prefix=*/true, /*finetune_epochs=*/2), {}, sink, cancel);
  ASSERT_TRUE(outcome.status.ok()) << outcome.status;

  // Phases: prefix training before fine-tuning, fine-tuning before the final evaluation.
  std::vector<v1::Phase> phases;
  for (const auto& e : sink.events) {
    if (e.has_phase_change()) phases.push_back(e.phase_change().phase());
  }
  auto first = [&](v1::Phase p) { return std::find(phases.begin(), phases.end(), p); };
  ASSERT_NE(first(v1::PHASE_TRAIN_PREFIX), phases.end());
  ASSERT_NE(first(v1::PHASE_FINETUNE), phases.end());
  EXPECT_LT(first(v1::PHASE_TRAIN_PREFIX), first(v1::PHASE_FINETUNE));
  EXPECT_EQ(phases.back(), v1::PHASE_DONE);

  // Prefix: 4 steps per epoch (16 windows, batch 4) x 3 epochs, steps 0..11 in order, each with
  // its components and learning rate; one val point per epoch.
  const auto prefix_train = sink.Loss(v1::PHASE_TRAIN_PREFIX, "train");
  ASSERT_EQ(prefix_train.size(), 12u);
  for (size_t i = 0; i < prefix_train.size(); ++i) {
    EXPECT_EQ(prefix_train[i].step(), static_cast<int64_t>(i));
    EXPECT_EQ(prefix_train[i].block(), -1);
    EXPECT_TRUE(std::isfinite(prefix_train[i].loss()));
    EXPECT_GT(prefix_train[i].learning_rate(), 0);
    for (const char* c : {"outlier", "smoothness", "diversity", "magnitude"}) {
      EXPECT_EQ(prefix_train[i].components().count(c), 1u) << c;
    }
  }
  EXPECT_EQ(sink.Loss(v1::PHASE_TRAIN_PREFIX, "val").size(), 3u);

  // Fine-tuning: every block of 5 in order, steps 0..7 within each (4 per epoch x 2 epochs).
  const auto tune_train = sink.Loss(v1::PHASE_FINETUNE, "train");
  ASSERT_EQ(tune_train.size(), 5u * 8u);
  for (size_t i = 0; i < tune_train.size(); ++i) {
    EXPECT_EQ(tune_train[i].block(), static_cast<int>(i / 8));
    EXPECT_EQ(tune_train[i].step(), static_cast<int64_t>(i % 8));
    EXPECT_EQ(tune_train[i].epoch(), static_cast<int>(i % 8) / 4);
  }
  EXPECT_EQ(sink.Loss(v1::PHASE_FINETUNE, "val").size(), 5u * 2u);
  // Every prefix point comes before every fine-tuning point.
  size_t last_prefix = 0, first_tune = sink.events.size();
  for (size_t i = 0; i < sink.events.size(); ++i) {
    if (!sink.events[i].has_loss()) continue;
    if (sink.events[i].loss().phase() == v1::PHASE_TRAIN_PREFIX) last_prefix = i;
    if (sink.events[i].loss().phase() == v1::PHASE_FINETUNE) first_tune = std::min(first_tune, i);
  }
  EXPECT_LT(last_prefix, first_tune);

  const auto& m = outcome.result.metrics();
  EXPECT_LE(m.at("prefix/best_loss"), m.at("prefix/initial_loss"));
  EXPECT_GT(m.at("finetune/peak_rss_bytes"), 0);
  EXPECT_GT(m.at("finetune/peak_training_bytes"), 0);
  EXPECT_EQ(m.at("finetune/resumed_at_block"), 0);
  // Every block keeps its lowest-val-loss state, so none ends above where it started; blocks
  // 0-3 improve. The last block's val loss is dominated by a few tokens where quantization noise
  // on the variant's flag dimensions wakes its planted neuron (squared errors of 10^4 against
  // targets of norm^2 400): it starts anywhere from 1.57 to 2.90 depending on the BLAS kernel
  // alone (OPENBLAS_CORETYPE), and its training lowers it in some of those runs and raises it in
  // others (on the H100 too). So it is held to "not worse" only.
  for (int b = 0; b < 5; ++b) {
    const std::string block = "finetune/block" + std::to_string(b);
    const double initial = m.at(block + "/initial_val_loss");
    const double final_loss = m.at(block + "/final_val_loss");
    EXPECT_LE(final_loss, initial * (1 + 1e-6)) << block;
    if (b < 4) {
      EXPECT_LT(final_loss, initial) << block;
    }
    EXPECT_GE(m.at(block + "/kept_epoch"), -1) << block;
    EXPECT_LE(m.at(block + "/kept_epoch"), 1) << block;
    RecordProperty(block + "/val_loss_initial_final",
                   std::to_string(m.at(block + "/initial_val_loss")) + " " +
                       std::to_string(m.at(block + "/final_val_loss")));
  }
  RecordProperty("max_down_proj_input_detected_trained",
                 std::to_string(m.at("prefix/max_down_proj_input/detected")) + " " +
                     std::to_string(m.at("prefix/max_down_proj_input/trained")));
  // The learned prefix keeps the planted outliers removed as well as the detected tokens (1 %).
  EXPECT_LE(m.at("prefix/max_down_proj_input/trained"),
            1.01 * m.at("prefix/max_down_proj_input/detected"));
  // The trained prefix builds the cache: its nearest tokens are the job's prefix.
  EXPECT_EQ(outcome.result.prefix_token_ids_size(), static_cast<int>(m.at("prefix/len")));
  const double before = m.at(std::string(kPpl) + "quantized_before_finetune");
  const double after = m.at(std::string(kPpl) + "quantized");
  RecordProperty("ppl_w4a4kv4_before_after_finetune",
                 std::to_string(before) + " " + std::to_string(after));
  // W4A4KV4 static on a 64-wide model is far from full precision; fine-tuning must close a
  // clear part of the gap (here about half).
  EXPECT_LT(after, 0.8 * before);
  EXPECT_GT(after, m.at(std::string(kPpl) + "fp"));
}

TEST_F(TrainingTest, CancelledJobResumesAtTheNextBlockWithTheSameResult) {
  const std::string work =
      std::string(QUANTD_BINARY_DIR) + "/tests/pipeline/training-work-" + std::to_string(getpid());
  std::filesystem::remove_all(work);
  RunJobOptions options;
  options.work_dir = work;
  const v1::JobSpec spec = Spec(/*trainable_prefix=*/true, /*finetune_epochs=*/1);

  // First run: cancelled at the first fine-tuning step of block 2 (blocks 0 and 1 finished).
  CancellationToken cancel;
  CollectingSink interrupted;
  interrupted.on_event = [&](const v1::JobEvent& e) {
    if (e.has_loss() && e.loss().phase() == v1::PHASE_FINETUNE && e.loss().block() == 2) {
      cancel.Cancel();
    }
  };
  auto first = RunJob(spec, options, interrupted, cancel);
  EXPECT_EQ(first.reason, v1::FAILURE_REASON_CANCELLED) << first.status;
  int last_block = -1;
  for (const auto& p : interrupted.Loss(v1::PHASE_FINETUNE, "train")) {
    last_block = std::max(last_block, p.block());
  }
  EXPECT_EQ(last_block, 2);  // stopped within one step

  // The requeued job (same spec, same work dir): prefix and blocks 0, 1 from the checkpoints.
  CancellationToken no_cancel;
  CollectingSink resumed;
  auto second = RunJob(spec, options, resumed, no_cancel);
  ASSERT_TRUE(second.status.ok()) << second.status;
  EXPECT_EQ(second.result.metrics().at("finetune/resumed_at_block"), 2);
  EXPECT_TRUE(resumed.Logged("fine-tuning resumed at block 2"));
  EXPECT_TRUE(resumed.Logged("trained prefix restored from the checkpoint"));
  EXPECT_TRUE(resumed.Loss(v1::PHASE_TRAIN_PREFIX, "train").empty());
  const auto tuned = resumed.Loss(v1::PHASE_FINETUNE, "train");
  ASSERT_FALSE(tuned.empty());
  EXPECT_EQ(tuned.front().block(), 2);

  // An uninterrupted run without checkpoints.
  CollectingSink whole;
  auto reference = RunJob(spec, {}, whole, no_cancel);
  ASSERT_TRUE(reference.status.ok()) << reference.status;
  const double resumed_ppl = second.result.metrics().at(std::string(kPpl) + "quantized");
  const double reference_ppl = reference.result.metrics().at(std::string(kPpl) + "quantized");
  EXPECT_NEAR(resumed_ppl, reference_ppl, 1e-4 * reference_ppl);
  EXPECT_EQ(std::vector<int32_t>(second.result.prefix_token_ids().begin(),
                                 second.result.prefix_token_ids().end()),
            std::vector<int32_t>(reference.result.prefix_token_ids().begin(),
                                 reference.result.prefix_token_ids().end()));
  std::filesystem::remove_all(work);
}

// The checkpoints belong to the calibration data too, not only to the spec's text: the same spec
// rerun after its calibration file changed (same path) trains afresh instead of resuming.
TEST_F(TrainingTest, ChangedCalibrationTextDoesNotResumeOldCheckpoints) {
  const std::string work =
      std::string(QUANTD_BINARY_DIR) + "/tests/pipeline/training-calib-" + std::to_string(getpid());
  std::filesystem::remove_all(work);
  std::filesystem::create_directories(work);
  const std::string text = work + "/calibration.txt";
  std::filesystem::copy_file(SharedData("text/tinystories-valid-subset.txt"), text);
  v1::JobSpec spec = Spec(/*trainable_prefix=*/false, /*finetune_epochs=*/1);
  spec.mutable_calibration()->set_dataset_path(text);
  RunJobOptions options;
  options.work_dir = work;
  CancellationToken cancel;
  CollectingSink first;
  ASSERT_TRUE(RunJob(spec, options, first, cancel).status.ok());

  CollectingSink same;  // unchanged: every block comes from the checkpoint
  auto again = RunJob(spec, options, same, cancel);
  ASSERT_TRUE(again.status.ok()) << again.status;
  EXPECT_TRUE(same.Loss(v1::PHASE_FINETUNE, "train").empty());

  {  // Other stories at the same path.
    std::ifstream in(SharedData("text/tinystories-valid-subset.txt"));
    const std::string all((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    std::ofstream(text, std::ios::trunc) << all.substr(all.size() / 2);
  }
  CollectingSink changed;
  auto rerun = RunJob(spec, options, changed, cancel);
  ASSERT_TRUE(rerun.status.ok()) << rerun.status;
  EXPECT_TRUE(changed.Logged("ignoring checkpoint"));
  EXPECT_FALSE(changed.Loss(v1::PHASE_FINETUNE, "train").empty());
  std::filesystem::remove_all(work);
}

TEST_F(TrainingTest, ContinuousPrefixBuildsTheCacheFromTheEmbeddings) {
  CollectingSink sink;
  CancellationToken cancel;
  auto spec = Spec(/*trainable_prefix=*/true, /*finetune_epochs=*/0);
  spec.mutable_prefix()->set_mode(v1::PREFIX_MODE_CONTINUOUS);
  // The variant's outliers never reach the residual stream: train where they are.
  spec.mutable_prefix()->set_loss_site("down_proj_input");
  spec.mutable_eval()->add_compare("rotation");
  auto outcome = RunJob(spec, {}, sink, cancel);
  ASSERT_TRUE(outcome.status.ok()) << outcome.status;
  EXPECT_TRUE(sink.Logged("nearest tokens"));
  bool continuous_cache = false;
  for (const auto& e : sink.events) {
    if (e.has_phase_change() && e.phase_change().phase() == v1::PHASE_BUILD_PREFIX_CACHE &&
        e.phase_change().detail().find("continuous") != std::string::npos) {
      continuous_cache = true;
    }
  }
  EXPECT_TRUE(continuous_cache);
  EXPECT_TRUE(sink.Loss(v1::PHASE_FINETUNE, "train").empty());
  const auto& m = outcome.result.metrics();
  EXPECT_EQ(m.count(std::string(kPpl) + "quantized_before_finetune"), 0u);
  EXPECT_LE(m.at("prefix/max_down_proj_input/trained"),
            1.01 * m.at("prefix/max_down_proj_input/detected"));
  // The planted outliers ruin the rotated model without a prefix; the trained one removes them.
  RecordProperty("ppl_w4a4kv4_rotation_continuous",
                 std::to_string(m.at(std::string(kPpl) + "rotation")) + " " +
                     std::to_string(m.at(std::string(kPpl) + "quantized")));
  EXPECT_LT(m.at(std::string(kPpl) + "quantized"), m.at(std::string(kPpl) + "rotation"));
}

TEST_F(TrainingTest, FinetunedModelWithContinuousPrefixExports) {
  const std::string out = std::string(QUANTD_BINARY_DIR) + "/tests/pipeline/training-export-" +
                          std::to_string(getpid());
  std::filesystem::remove_all(out);
  auto spec = Spec(/*trainable_prefix=*/true, /*finetune_epochs=*/1);
  spec.mutable_prefix()->set_mode(v1::PREFIX_MODE_CONTINUOUS);
  spec.set_output_dir(out);
  CollectingSink sink;
  CancellationToken cancel;
  auto outcome = RunJob(spec, {}, sink, cancel);
  // The export re-opens the folder and checks the reloaded model's perplexity (1e-4).
  ASSERT_TRUE(outcome.status.ok()) << outcome.status;
  EXPECT_FALSE(outcome.result.artifact_path().empty());
  EXPECT_GT(outcome.result.metrics().at("export/bytes"), 0);
  EXPECT_TRUE(
      std::filesystem::is_regular_file(outcome.result.artifact_path() + "/prefix.safetensors"));
  std::filesystem::remove_all(out);
}

TEST_F(TrainingTest, DivergingFinetuningFailsAsNumericalAfterRollbacks) {
  auto spec = Spec(/*trainable_prefix=*/false, /*finetune_epochs=*/2);
  spec.mutable_training()->set_weight_lr(1e30);  // the weights blow up at the first step
  spec.mutable_training()->set_quant_lr(1e30);
  CollectingSink sink;
  CancellationToken cancel;
  auto outcome = RunJob(spec, {}, sink, cancel);
  EXPECT_EQ(outcome.reason, v1::FAILURE_REASON_NUMERICAL) << outcome.status;
  // Each diverged block was rolled back with a warning before the job gave up.
  int warnings = 0;
  for (const auto& e : sink.events) {
    if (e.has_log() && e.log().level() == "warning" &&
        e.log().message().find("non-finite loss") != std::string::npos) {
      ++warnings;
    }
  }
  EXPECT_GE(warnings, 2);
}

TEST_F(TrainingTest, CancelDuringPrefixTrainingStopsWithinAStep) {
  CancellationToken cancel;
  CollectingSink sink;
  sink.on_event = [&](const v1::JobEvent& e) {
    if (e.has_loss() && e.loss().phase() == v1::PHASE_TRAIN_PREFIX) cancel.Cancel();
  };
  auto outcome = RunJob(Spec(true, 1), {}, sink, cancel);
  EXPECT_EQ(outcome.reason, v1::FAILURE_REASON_CANCELLED);
  EXPECT_EQ(sink.Loss(v1::PHASE_TRAIN_PREFIX, "train").size(), 1u);
  EXPECT_TRUE(sink.Loss(v1::PHASE_FINETUNE, "train").empty());
}

}  // namespace
}  // namespace quantd::pipeline
