// Fine-tuning on issue 6's rotated model: SteBlock reads rotation's quant::QuantLinear
// (down_proj with its online Hadamard) through SteBlockOptions::adapt — the pipeline's
// FromQuantLinear — and trains W4 weights with dynamic A8 inputs behind a full-precision prefix KV
// cache.
#include "gtest/gtest.h"
#include "tests/train/train_fixture.h"
#include "worker/eval/perplexity.h"
#include "worker/pipeline/finetune_installer.h"
#include "worker/quant/quant_linear.h"
#include "worker/quant/rotation.h"
#include "worker/train/finetune.h"
#include "worker/train/ste_block.h"

namespace quantd::train {
namespace {

struct TunedRun {
  double ppl = 0;
  FinetuneResult result;
};

TunedRun RotateAndTune(int epochs, const std::vector<std::vector<int32_t>>& train,
                       const std::vector<std::vector<int32_t>>& val,
                       const std::vector<int32_t>& eval_tokens) {
  auto model = testing::LoadModel();
  quant::RotationOptions rotation;
  rotation.down_online_had = true;
  rotation.qk_online_had = true;
  EXPECT_TRUE(quant::RotateModel(*model, rotation).ok());
  model::KvCache prefix;
  {
    torch::NoGradGuard no_grad;
    auto kv = model->BuildPrefixKv(torch::tensor(std::vector<int64_t>{1}).view({1, 1}));
    EXPECT_TRUE(kv.ok());
    prefix = *kv;
  }
  SteBlockOptions ste;
  ste.wbits = 4;
  ste.input_bits = 8;
  ste.adapt = pipeline::FromQuantLinear;
  FinetuneOptions options;
  options.epochs = epochs;
  options.quant_lr = 5e-3;
  options.weight_lr = 1e-3;
  options.batch_size = 4;
  TunedRun run;
  auto result = FinetuneBlocks(*model, &prefix, train, val, MakeSteBlockInstaller(ste), options);
  EXPECT_TRUE(result.ok()) << result.status();
  if (result.ok()) run.result = *result;
  // The rotated down_proj kept its online Hadamard.
  auto down = std::dynamic_pointer_cast<SteLinear>(model->blocks[0].down_proj);
  EXPECT_TRUE(down != nullptr && down->input_hadamard.has_value());
  eval::PerplexityOptions eval;
  eval.seqlen = 256;
  eval.max_windows = 4;
  eval.prefix = &prefix;
  auto ppl = eval::EvaluatePerplexity(*model, eval_tokens, eval);
  EXPECT_TRUE(ppl.ok()) << ppl.status();
  run.ppl = ppl.ok() ? ppl->perplexity : 0;
  return run;
}

TEST(RotatedFinetuneTest, W4A8OnTheRotatedModelImprovesWithTraining) {
  const auto tokens = testing::StoryTokens();
  const auto train = testing::Windows(tokens, 16, 64, 0);
  const auto val = testing::Windows(tokens, 4, 64, 1200);
  const std::vector<int32_t> eval_tokens(tokens.begin() + 4000, tokens.end());
  const TunedRun untrained = RotateAndTune(0, train, val, eval_tokens);
  const TunedRun trained = RotateAndTune(3, train, val, eval_tokens);
  for (const BlockReport& b : trained.result.blocks) {
    EXPECT_LT(b.final_val_loss, b.initial_val_loss) << "block " << b.block;
  }
  EXPECT_LT(trained.ppl, untrained.ppl);
  RecordProperty("ppl_w4a8_rotated_untrained_trained",
                 std::to_string(untrained.ppl) + " " + std::to_string(trained.ppl));
}

}  // namespace
}  // namespace quantd::train
