#include "worker/eval/generate.h"

#include <vector>

#include "gtest/gtest.h"
#include "tests/eval/eval_fixture.h"

namespace quantd::eval {
namespace {

using GenerateTest = testing::Stories260KTest;

// Reference: greedy decoding from BOS (shared/data/README.md).
TEST_F(GenerateTest, GreedyFromBosMatchesReference) {
  const std::vector<int64_t> expected = {403, 407, 261, 378, 432, 383, 286, 261, 376, 298,
                                         315, 421, 395, 317, 426, 338, 401, 396, 267, 337,
                                         410, 408, 419, 292, 411, 322, 265, 282, 295, 433,
                                         426, 385, 328, 432, 358, 394, 261, 370, 432, 352};
  GenerateOptions options;
  options.max_new_tokens = 40;
  auto ids = GreedyGenerate(*model_, {1}, options);
  ASSERT_TRUE(ids.ok()) << ids.status();
  EXPECT_EQ(*ids, expected);

  auto text = tokenizer_->Decode(std::vector<int32_t>(ids->begin(), ids->end()));
  ASSERT_TRUE(text.ok());
  EXPECT_EQ(text->rfind("Once upon a time, there was a little girl named Lily.", 0), 0u) << *text;
}

TEST_F(GenerateTest, PrefixCacheContinuesTheSameWay) {
  GenerateOptions options;
  options.max_new_tokens = 10;
  auto direct = GreedyGenerate(*model_, {1, 403, 407}, options);
  torch::NoGradGuard no_grad;
  auto prefix = model_->BuildPrefixKv(torch::tensor({int64_t{1}, int64_t{403}}).view({1, 2}));
  ASSERT_TRUE(prefix.ok());
  options.prefix = &*prefix;
  auto cached = GreedyGenerate(*model_, {407}, options);
  ASSERT_TRUE(direct.ok() && cached.ok());
  EXPECT_EQ(*direct, *cached);
}

// After a prefix that ends where the prompt would start (an export's prefix ending in BOS),
// an empty prompt continues from the prefix's last logits: the same tokens as feeding BOS.
TEST_F(GenerateTest, EmptyPromptContinuesFromThePrefixLogits) {
  GenerateOptions options;
  options.max_new_tokens = 10;
  auto direct = GreedyGenerate(*model_, {1, 403}, options);
  torch::NoGradGuard no_grad;
  model::ForwardRequest request;
  request.input_ids = torch::tensor({int64_t{1}, int64_t{403}}).view({1, 2});
  request.logits = model::LogitsMode::kLast;
  request.return_kv = true;
  auto prefix = model_->Forward(request);
  ASSERT_TRUE(prefix.ok());
  options.prefix = &prefix->kv;
  EXPECT_FALSE(GreedyGenerate(*model_, {}, options).ok());  // no logits: nothing to start from
  options.prefix_last_logits = prefix->logits;
  auto cached = GreedyGenerate(*model_, {}, options);
  ASSERT_TRUE(direct.ok() && cached.ok()) << cached.status();
  EXPECT_EQ(*direct, *cached);
}

TEST_F(GenerateTest, RejectsBadInput) {
  GenerateOptions options;
  EXPECT_FALSE(GreedyGenerate(*model_, {}, options).ok());
  EXPECT_FALSE(GreedyGenerate(*model_, {9999}, options).ok());
  options.max_new_tokens = -1;
  EXPECT_FALSE(GreedyGenerate(*model_, {1}, options).ok());
}

}  // namespace
}  // namespace quantd::eval
