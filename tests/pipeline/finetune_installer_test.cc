// The pipeline's bridge to block fine-tuning on stories260K (rotated, R3 + R4, W4A4KV8 static):
// fine-tuning against a calibrated twin starts from the twin's model (0 epochs: the same
// perplexity), training lowers it, and ToQuantLinears turns the trained blocks into
// QuantLinears that compute the same function.
#include "worker/pipeline/finetune_installer.h"

#include "gtest/gtest.h"
#include "tests/common/dtype_transfer.h"
#include "worker/eval/token_stream.h"
#include "worker/model/tokenizer.h"
#include "worker/quant/prefix_cache.h"
#include "worker/quant/quant_linear.h"
#include "worker/quant/rotation.h"
#include "worker/train/finetune.h"

namespace quantd::pipeline {
namespace {

std::string SharedData(const std::string& relative) {
  return std::string(QUANTD_SHARED_DATA) + "/" + relative;
}

class FinetuneInstallerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto tokenizer = model::LoadTokenizer(SharedData("models/stories260K"));
    ASSERT_TRUE(tokenizer.ok());
    auto text = eval::ReadTextFile(SharedData("text/tinystories-valid-subset.txt"));
    ASSERT_TRUE(text.ok());
    auto tokens =
        eval::BuildTokenStream(**tokenizer, text->substr(0, 80000), eval::DocumentMode::kBlankLine);
    ASSERT_TRUE(tokens.ok());
    tokens_ = *tokens;
    for (int64_t w = 0, at = 0; w < 12; ++w, at += 129) {
      (w < 8 ? train_ : val_).emplace_back(tokens_.begin() + at + 1, tokens_.begin() + at + 129);
    }
    settings_.weight.bits = 4;
    settings_.weight.mse_init = true;
    settings_.input_bits = 4;
    settings_.input_dynamic = false;
    settings_.k_bits = 8;
    settings_.v_bits = 8;
    settings_.kv_group_size = 8;
    settings_.kv_dynamic = false;
  }

  // `streamed`: every block streamed through a DtypeTransfer (host memory simulated as float64).
  std::unique_ptr<model::LlamaModel> Rotated(
      std::shared_ptr<test_data::TransferCounts> streamed = nullptr) {
    auto model = model::LlamaModel::Load(SharedData("models/stories260K"));
    EXPECT_TRUE(model.ok());
    if (streamed != nullptr) {
      const int layers = static_cast<int>((*model)->blocks.size());
      EXPECT_TRUE((*model)->StreamLastBlocks(layers, test_data::DtypeTransfer(streamed)).ok());
    }
    quant::RotationOptions rotation;
    rotation.down_online_had = true;
    rotation.qk_online_had = true;
    EXPECT_TRUE(quant::RotateModel(**model, rotation).ok());
    return std::move(*model);
  }

  double Perplexity(model::LlamaModel& model, const quant::PrefixCache& prefix) {
    quant::WindowEval eval;
    eval.seqlen = 256;
    eval.max_windows = 8;
    eval.prefix = &prefix;
    const std::vector<int32_t> held_out(tokens_.begin() + 4000, tokens_.end());
    auto ppl = quant::EvaluateWindows(model, held_out, eval);
    EXPECT_TRUE(ppl.ok()) << ppl.status();
    return ppl.ok() ? ppl->perplexity : 0;
  }

  std::vector<int32_t> tokens_;
  std::vector<std::vector<int32_t>> train_, val_;
  quant::QuantSettings settings_;
};

TEST_F(FinetuneInstallerTest, TunedBlocksStartFromTheTwinImproveAndConvertExactly) {
  auto fp = Rotated();
  auto prefix = quant::BuildPrefixCache(*fp, {1}, 1);
  ASSERT_TRUE(prefix.ok());
  auto twin = Rotated();
  ASSERT_TRUE(quant::QuantizeModel(*twin, settings_).ok());
  ASSERT_TRUE(quant::CalibrateStatic(*twin, train_, &prefix->kv, 4).ok());
  const double twin_ppl = Perplexity(*twin, *prefix);

  train::SteBlockOptions ste;
  ste.wbits = 4;
  ste.mse_init = true;
  ste.input_bits = 4;
  ste.input_dynamic = false;
  for (int epochs : {0, 3}) {
    auto model = epochs == 0 ? Rotated() : std::move(fp);
    train::FinetuneOptions options;
    options.epochs = epochs;
    options.quant_lr = 5e-3;
    options.weight_lr = 1e-3;
    options.batch_size = 4;
    auto result = train::FinetuneBlocks(*model, &prefix->kv, train_, val_,
                                        MakeCalibratedBlockInstaller(*twin, ste), options);
    ASSERT_TRUE(result.ok()) << result.status();
    const double tuned = Perplexity(*model, *prefix);
    ASSERT_TRUE(ToQuantLinears(*model, settings_).ok());
    for (const auto& b : model->blocks) {
      EXPECT_NE(dynamic_cast<quant::QuantLinear*>(b.down_proj.get()), nullptr);
      EXPECT_EQ(b.attention_transform, twin->blocks[&b - &model->blocks[0]].attention_transform);
    }
    const double converted = Perplexity(*model, *prefix);
    // The same operations in the same order (kernels::OnlineHadamard on both sides): 1e-3
    // apart, as before they shared it, is what 4-bit activations make of last-bit differences.
    EXPECT_NEAR(converted, tuned, 1e-6 * tuned) << epochs << " epochs";
    if (epochs == 0) {
      // Same quantizers, same scales: the untrained blocks are the twin's model.
      EXPECT_NEAR(tuned, twin_ppl, 0.01 * twin_ppl);
    } else {
      EXPECT_LT(tuned, twin_ppl);
    }
    RecordProperty(
        epochs == 0 ? "ppl_twin_untrained" : "ppl_twin_tuned",
        std::to_string(twin_ppl) + " " + std::to_string(tuned) + " " + std::to_string(converted));
  }
}

// The K/V quantizers sit between k_proj/v_proj and the loss: fine-tuning must reach those two
// projections through them (straight through), in both KV modes, or they keep their initial
// weights and scales whatever the learning rates.
TEST_F(FinetuneInstallerTest, GradientReachesKeyAndValueProjectionsThroughKvQuantization) {
  for (bool kv_dynamic : {false, true}) {
    SCOPED_TRACE(kv_dynamic ? "dynamic KV" : "static KV");
    settings_.k_bits = 4;
    settings_.v_bits = 4;
    settings_.kv_dynamic = kv_dynamic;
    auto model = Rotated();
    auto twin = Rotated();
    ASSERT_TRUE(quant::QuantizeModel(*twin, settings_).ok());
    ASSERT_TRUE(quant::CalibrateStatic(*twin, train_, nullptr, 4).ok());
    train::SteBlockOptions ste;
    ste.wbits = 4;
    ste.input_bits = 4;
    ste.input_dynamic = false;
    auto block = MakeCalibratedBlockInstaller(*twin, ste)(*model, 0);
    ASSERT_TRUE(block.ok()) << block.status();
    std::vector<torch::Tensor> params = (*block)->WeightParameters();
    for (const auto& p : (*block)->QuantParameters()) params.push_back(p);
    for (auto& p : params) p.set_requires_grad(true);

    const torch::Tensor ids = torch::tensor(train_[0], torch::kInt64).view({1, -1});
    const torch::Tensor hidden = model->Embed(ids);
    const torch::Tensor out = model->RunBlock(0, hidden, 0, nullptr, nullptr, nullptr);
    torch::mse_loss(out, hidden.detach() * 1.5).backward();
    for (const char* name : {"k_proj", "v_proj"}) {
      const auto& slot =
          std::string(name) == "k_proj" ? model->blocks[0].k_proj : model->blocks[0].v_proj;
      auto layer = std::dynamic_pointer_cast<train::SteLinear>(slot);
      ASSERT_NE(layer, nullptr) << name;
      for (const torch::Tensor* t : {&layer->weight, &layer->weight_scales}) {
        ASSERT_TRUE(t->grad().defined()) << name;
        EXPECT_GT(t->grad().abs().max().item<double>(), 0.0) << name;
      }
    }
  }
}

// Rotation, quantization, calibration, fine-tuning and the conversion back to QuantLinears on
// models whose blocks all live in (simulated) host memory: every step that touches a block's
// tensors holds it on the compute side, so the figures are those of resident models, bit for
// bit, and every block is back in storage at the end.
TEST_F(FinetuneInstallerTest, StreamedModelsGiveTheResidentFigures) {
  struct Figures {
    double twin_ppl = 0, tuned_ppl = 0, converted_ppl = 0, final_val_loss = 0;
  };
  auto run = [&](std::shared_ptr<test_data::TransferCounts> streamed) {
    Figures figures;
    auto fp = Rotated(streamed);
    auto prefix = quant::BuildPrefixCache(*fp, {1}, 1);
    EXPECT_TRUE(prefix.ok()) << prefix.status();
    auto twin = Rotated(streamed);
    EXPECT_TRUE(quant::QuantizeModel(*twin, settings_).ok());
    EXPECT_TRUE(quant::CalibrateStatic(*twin, train_, &prefix->kv, 4).ok());
    figures.twin_ppl = Perplexity(*twin, *prefix);
    train::SteBlockOptions ste;
    ste.wbits = 4;
    ste.input_bits = 4;
    ste.input_dynamic = false;
    train::FinetuneOptions options;
    options.epochs = 1;
    options.batch_size = 4;
    auto result = train::FinetuneBlocks(*fp, &prefix->kv, train_, val_,
                                        MakeCalibratedBlockInstaller(*twin, ste), options);
    EXPECT_TRUE(result.ok()) << result.status();
    if (result.ok()) figures.final_val_loss = result->blocks.back().final_val_loss;
    figures.tuned_ppl = Perplexity(*fp, *prefix);
    EXPECT_TRUE(ToQuantLinears(*fp, settings_).ok());
    figures.converted_ppl = Perplexity(*fp, *prefix);
    if (streamed != nullptr) {
      for (int l = 0; l < static_cast<int>(fp->blocks.size()); ++l) {
        EXPECT_TRUE(test_data::BlockInStorage(*fp, l)) << l;
        EXPECT_TRUE(test_data::BlockInStorage(*twin, l)) << l;
      }
    }
    return figures;
  };
  const Figures resident = run(nullptr);
  auto counts = std::make_shared<test_data::TransferCounts>();
  const Figures streamed = run(counts);
  EXPECT_DOUBLE_EQ(streamed.twin_ppl, resident.twin_ppl);
  EXPECT_DOUBLE_EQ(streamed.final_val_loss, resident.final_val_loss);
  EXPECT_DOUBLE_EQ(streamed.tuned_ppl, resident.tuned_ppl);
  EXPECT_DOUBLE_EQ(streamed.converted_ppl, resident.converted_ppl);
  EXPECT_GT(counts->to_compute, 0);
}

}  // namespace
}  // namespace quantd::pipeline
