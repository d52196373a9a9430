#include "worker/eval/multiple_choice.h"

#include <cmath>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/common/story_cloze.h"
#include "tests/eval/eval_fixture.h"

namespace quantd::eval {
namespace {

using ::testing::HasSubstr;
using testing::SharedData;
using MultipleChoiceTest = testing::Stories260KTest;

constexpr int32_t kBos = 1;

MultipleChoiceTask Task(std::vector<MultipleChoiceExample> examples) {
  MultipleChoiceTask task;
  task.name = "hand";
  task.layout = "generic";
  task.examples = std::move(examples);
  return task;
}

MultipleChoiceExample Example(const std::string& context, std::vector<std::string> choices,
                              int label) {
  MultipleChoiceExample example;
  for (const auto& choice : choices) {
    example.contexts.push_back(context);
    example.continuations.push_back(choice);
    example.choice_lengths.push_back(static_cast<double>(choice.size()));
  }
  example.label = label;
  return example;
}

// Several lengths, so that batches are padded, and a context with a trailing space.
MultipleChoiceTask HandTask() {
  return Task({
      Example("Once upon a time, there was a little girl named Lily.",
              {" She loved to play outside.", " The car is red.", " He ate."}, 0),
      Example("Tom had a big red ball. He liked to", {" play with it.", " sky blue moon."}, 0),
      Example("The cat sat on the ", {"mat.", "happy dog went to the park with his mom."}, 0),
      Example("One day, Sue went to the park with her mom. They saw a big tree and",
              {" a bird.", " ran.", " the sun was very happy and warm."}, 2),
  });
}

// log p(continuation | BOS + context), one request at a time, from the logits of one forward.
double DirectLoglikelihood(model::LlamaModel& model, const ChoiceTokens& tokens) {
  std::vector<int64_t> ids = {kBos};
  ids.insert(ids.end(), tokens.context.begin(), tokens.context.end());
  ids.insert(ids.end(), tokens.continuation.begin(), tokens.continuation.end());
  torch::NoGradGuard no_grad;
  model::ForwardRequest request;
  request.input_ids = torch::tensor(ids, torch::kInt64).unsqueeze(0);
  auto result = model.Forward(request);
  EXPECT_TRUE(result.ok()) << result.status();
  auto log_probs = torch::log_softmax(result->logits[0].to(torch::kFloat64), -1);
  double sum = 0;
  const size_t first = ids.size() - tokens.continuation.size();
  for (size_t i = first; i < ids.size(); ++i) sum += log_probs[i - 1][ids[i]].item<double>();
  return sum;
}

TEST_F(MultipleChoiceTest, TrailingSpacesOfTheContextMoveToTheContinuation) {
  auto spaced = TokenizeTask(*tokenizer_, Task({Example("The cat sat on the ", {"mat."}, 0)}));
  auto plain = TokenizeTask(*tokenizer_, Task({Example("The cat sat on the", {" mat."}, 0)}));
  ASSERT_TRUE(spaced.ok() && plain.ok());
  EXPECT_EQ(spaced->choices[0][0].context, plain->choices[0][0].context);
  EXPECT_EQ(spaced->choices[0][0].continuation, plain->choices[0][0].continuation);
  EXPECT_FALSE(spaced->choices[0][0].continuation.empty());
}

TEST_F(MultipleChoiceTest, BatchedScoresEqualOneRequestAtATime) {
  auto task = TokenizeTask(*tokenizer_, HandTask());
  ASSERT_TRUE(task.ok()) << task.status();
  MultipleChoiceOptions options;
  options.batch_size = 3;  // 10 requests: batches of 3, 3, 3, 1 with padding
  options.bos_id = kBos;
  int64_t last_done = 0, calls = 0;
  auto result = EvaluateMultipleChoice(*model_, *task, options, [&](int64_t done, int64_t total) {
    EXPECT_EQ(total, 10);
    EXPECT_GT(done, last_done);
    last_done = done;
    ++calls;
    return true;
  });
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_EQ(calls, 4);
  EXPECT_EQ(last_done, 10);
  ASSERT_EQ(result->examples, 4);
  for (size_t e = 0; e < task->choices.size(); ++e) {
    for (size_t c = 0; c < task->choices[e].size(); ++c) {
      EXPECT_NEAR(result->loglikelihoods[e][c], DirectLoglikelihood(*model_, task->choices[e][c]),
                  1e-3)
          << e << "/" << c;
      EXPECT_LT(result->loglikelihoods[e][c], 0);
    }
  }
  // The accuracies follow from the sums: recount them here.
  double right = 0, right_norm = 0;
  for (size_t e = 0; e < task->choices.size(); ++e) {
    const auto& sums = result->loglikelihoods[e];
    size_t best = 0, best_norm = 0;
    for (size_t c = 1; c < sums.size(); ++c) {
      if (sums[c] > sums[best]) best = c;
      if (sums[c] / task->choice_lengths[e][c] >
          sums[best_norm] / task->choice_lengths[e][best_norm]) {
        best_norm = c;
      }
    }
    right += best == static_cast<size_t>(task->labels[e]);
    right_norm += best_norm == static_cast<size_t>(task->labels[e]);
  }
  EXPECT_DOUBLE_EQ(result->accuracy, right / 4);
  EXPECT_DOUBLE_EQ(result->accuracy_norm, right_norm / 4);
  EXPECT_NEAR(result->accuracy_stderr, std::sqrt(result->accuracy * (1 - result->accuracy) / 3),
              1e-12);
}

TEST_F(MultipleChoiceTest, AfterABosPrefixNoSecondBosAndTheSameScores) {
  // A context-free choice is predicted by the prefix's last logits alone.
  MultipleChoiceTask hand = HandTask();
  hand.examples.push_back(Example("", {" Once upon a time", " Dog the the"}, 0));
  auto task = TokenizeTask(*tokenizer_, hand);
  ASSERT_TRUE(task.ok()) << task.status();
  MultipleChoiceOptions plain;
  plain.bos_id = kBos;
  auto expected = EvaluateMultipleChoice(*model_, *task, plain);
  ASSERT_TRUE(expected.ok()) << expected.status();

  torch::NoGradGuard no_grad;
  model::ForwardRequest request;
  request.input_ids = torch::tensor(std::vector<int64_t>{kBos}, torch::kInt64).unsqueeze(0);
  request.return_kv = true;
  auto prefix_pass = model_->Forward(request);
  ASSERT_TRUE(prefix_pass.ok()) << prefix_pass.status();
  MultipleChoiceOptions prefixed = plain;
  prefixed.prefix.kv = &prefix_pass->kv;
  prefixed.prefix.last_logits = prefix_pass->logits[0][0];
  prefixed.prefix.length = 1;
  prefixed.prefix.ends_with_bos = true;
  auto measured = EvaluateMultipleChoice(*model_, *task, prefixed);
  ASSERT_TRUE(measured.ok()) << measured.status();
  for (size_t e = 0; e < task->choices.size(); ++e) {
    for (size_t c = 0; c < task->choices[e].size(); ++c) {
      EXPECT_NEAR(measured->loglikelihoods[e][c], expected->loglikelihoods[e][c], 1e-3)
          << e << "/" << c;
    }
  }
  // With a second BOS after the prefix the scores would move.
  prefixed.prefix.ends_with_bos = false;
  auto doubled = EvaluateMultipleChoice(*model_, *task, prefixed);
  ASSERT_TRUE(doubled.ok());
  EXPECT_GT(std::abs(doubled->loglikelihoods[0][0] - expected->loglikelihoods[0][0]), 1e-3);
}

TEST_F(MultipleChoiceTest, StoriesModelPicksTheStorysOwnSentenceFarAboveChance) {
  const std::string path = std::string(QUANTD_BINARY_DIR) + "/tests/eval/story-cloze-eval.jsonl";
  ASSERT_EQ(
      quantd::testing::WriteStoryCloze(SharedData("text/tinystories-valid-subset.txt"), path, 200),
      200);
  auto file = ReadTaskFile(path, "story_cloze");
  ASSERT_TRUE(file.ok()) << file.status();
  auto task = TokenizeTask(*tokenizer_, *file);
  ASSERT_TRUE(task.ok()) << task.status();
  MultipleChoiceOptions options;
  options.bos_id = kBos;
  auto result = EvaluateMultipleChoice(*model_, *task, options);
  ASSERT_TRUE(result.ok()) << result.status();
  // Four choices: chance is 25 %, with a standard error of 3 points over 200 examples.
  // stories260K scores about 40 %; scoring the wrong positions falls to chance.
  EXPECT_GT(result->accuracy, 0.34) << result->accuracy;
  EXPECT_GT(result->accuracy_norm, 0.34) << result->accuracy_norm;
  RecordProperty("accuracy", std::to_string(result->accuracy));
  RecordProperty("accuracy_norm", std::to_string(result->accuracy_norm));
}

TEST_F(MultipleChoiceTest, LongContextsLoseTheirStartAndTooLongContinuationsAreErrors) {
  auto task = TokenizeTask(*tokenizer_, HandTask());
  ASSERT_TRUE(task.ok());
  MultipleChoiceOptions options;
  options.bos_id = kBos;
  // Room for BOS, two context tokens and the longest continuation.
  size_t longest_e = 0, longest_c = 0;
  for (size_t e = 0; e < task->choices.size(); ++e) {
    for (size_t c = 0; c < task->choices[e].size(); ++c) {
      if (task->choices[e][c].continuation.size() >
          task->choices[longest_e][longest_c].continuation.size()) {
        longest_e = e;
        longest_c = c;
      }
    }
  }
  ChoiceTokens kept = task->choices[longest_e][longest_c];
  ASSERT_GT(kept.context.size(), 2u);
  options.max_length = static_cast<int64_t>(1 + 2 + kept.continuation.size());
  kept.context.erase(kept.context.begin(), kept.context.end() - 2);
  auto result = EvaluateMultipleChoice(*model_, *task, options);
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_NEAR(result->loglikelihoods[longest_e][longest_c], DirectLoglikelihood(*model_, kept),
              1e-3);

  options.max_length = static_cast<int64_t>(kept.continuation.size());  // BOS does not fit
  auto too_long = EvaluateMultipleChoice(*model_, *task, options);
  EXPECT_EQ(too_long.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(too_long.status().message()),
              HasSubstr(absl::StrCat("task hand: example ", longest_e + 1, ", choice ",
                                     longest_c + 1, ": the continuation's")));
}

TEST_F(MultipleChoiceTest, ProgressCanCancel) {
  auto task = TokenizeTask(*tokenizer_, HandTask());
  ASSERT_TRUE(task.ok());
  MultipleChoiceOptions options;
  options.bos_id = kBos;
  options.batch_size = 2;
  int calls = 0;
  auto result = EvaluateMultipleChoice(*model_, *task, options,
                                       [&](int64_t, int64_t) { return ++calls < 2; });
  EXPECT_EQ(result.status().code(), absl::StatusCode::kCancelled);
  EXPECT_EQ(calls, 2);
}

TEST_F(MultipleChoiceTest, ATaskWithoutExamplesIsAnError) {
  TokenizedTask empty;
  empty.name = "none";
  auto result = EvaluateMultipleChoice(*model_, empty, MultipleChoiceOptions{});
  EXPECT_EQ(result.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(result.status().message()), HasSubstr("task none has no examples"));
}

TEST_F(MultipleChoiceTest, AContinuationWithoutTokensIsAnError) {
  auto task = TokenizeTask(*tokenizer_, Task({Example("The cat", {" sat", ""}, 0)}));
  EXPECT_EQ(task.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(task.status().message()), HasSubstr("example 1, choice 2"));
}

}  // namespace
}  // namespace quantd::eval
