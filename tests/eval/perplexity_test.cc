#include "worker/eval/perplexity.h"

#include <algorithm>
#include <fstream>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "tests/eval/eval_fixture.h"
#include "worker/eval/token_stream.h"

namespace quantd::eval {
namespace {

using testing::SharedData;
using PerplexityTest = testing::Stories260KTest;

std::vector<int32_t> Stream(const model::Tokenizer& tokenizer, const std::string& file,
                            DocumentMode mode) {
  auto text = ReadTextFile(SharedData(file));
  EXPECT_TRUE(text.ok()) << text.status();
  auto stream = BuildTokenStream(tokenizer, *text, mode);
  EXPECT_TRUE(stream.ok()) << stream.status();
  return stream.ok() ? *stream : std::vector<int32_t>{};
}

// Reference values: shared/data/README.md.
TEST_F(PerplexityTest, TinyStoriesMatchesReference) {
  auto tokens = Stream(*tokenizer_, "text/tinystories-valid-subset.txt", DocumentMode::kBlankLine);
  PerplexityOptions options;
  options.seqlen = 256;
  options.max_windows = 40;
  options.batch_size = 8;
  auto result = EvaluatePerplexity(*model_, tokens, options);
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_EQ(result->windows, 40);
  EXPECT_EQ(result->predictions, 10200);
  EXPECT_NEAR(result->mean_nll, 1.4152, 2e-4);
  EXPECT_NEAR(result->perplexity, 4.117, 0.002);
}

TEST_F(PerplexityTest, WikiTextMatchesReference) {
  auto tokens = Stream(*tokenizer_, "text/wikitext2-test.raw", DocumentMode::kWholeFile);
  PerplexityOptions options;
  options.seqlen = 256;
  options.max_windows = 40;
  options.batch_size = 8;
  auto result = EvaluatePerplexity(*model_, tokens, options);
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_NEAR(result->perplexity, 99.43, 0.05);
}

TEST_F(PerplexityTest, BatchSizeDoesNotChangeTheResult) {
  auto tokens = Stream(*tokenizer_, "text/tinystories-valid-subset.txt", DocumentMode::kBlankLine);
  PerplexityOptions options;
  options.seqlen = 64;
  options.max_windows = 6;
  options.batch_size = 1;
  auto one = EvaluatePerplexity(*model_, tokens, options);
  options.batch_size = 4;  // 4 + 2: a partial last batch
  auto four = EvaluatePerplexity(*model_, tokens, options);
  ASSERT_TRUE(one.ok() && four.ok());
  EXPECT_NEAR(one->mean_nll, four->mean_nll, 1e-5);
  EXPECT_EQ(four->predictions, 6 * 63);
}

TEST_F(PerplexityTest, LogProbsInSmallLogitBlocksEqualTheWholeLogits) {
  // The LM head runs in blocks so that a big vocabulary never makes [tokens, vocab] at once;
  // the blocks (here 3 rows, the last one partial) must score exactly what the full logits do.
  auto tokens = Stream(*tokenizer_, "text/tinystories-valid-subset.txt", DocumentMode::kBlankLine);
  const int64_t n = 50;
  model::ForwardRequest request;
  request.input_ids =
      torch::tensor(std::vector<int64_t>(tokens.begin(), tokens.begin() + n + 1), torch::kInt64)
          .view({1, -1});
  torch::NoGradGuard no_grad;
  auto result = model_->Forward(request);
  ASSERT_TRUE(result.ok()) << result.status();
  const torch::Tensor hidden = result->hidden[0].narrow(0, 0, n);
  const torch::Tensor targets = request.input_ids[0].narrow(0, 1, n);
  const torch::Tensor expected = torch::log_softmax(result->logits[0].narrow(0, 0, n), -1)
                                     .gather(-1, targets.unsqueeze(-1))
                                     .squeeze(-1)
                                     .to(torch::kFloat64);
  const int64_t vocab = model_->config().vocab_size;
  const torch::Tensor blocked = TargetLogProbsFromHidden(*model_, hidden, targets, 3 * vocab);
  const torch::Tensor whole = TargetLogProbsFromHidden(*model_, hidden, targets);
  ASSERT_EQ(blocked.sizes(), expected.sizes());
  EXPECT_EQ(blocked.scalar_type(), torch::kFloat64);
  EXPECT_LT((blocked - expected).abs().max().item<double>(), 1e-5);
  EXPECT_LT((blocked - whole).abs().max().item<double>(), 1e-5);
  EXPECT_NEAR(SumNllFromHidden(*model_, hidden, targets), -expected.sum().item<double>(), 1e-4);
  // A block smaller than one row still makes progress, one row at a time.
  EXPECT_LT(
      (TargetLogProbsFromHidden(*model_, hidden, targets, 1) - expected).abs().max().item<double>(),
      1e-5);
}

TEST_F(PerplexityTest, PrefixIsUnscoredContext) {
  // The prefix changes the context, not what is scored.
  auto tokens = Stream(*tokenizer_, "text/tinystories-valid-subset.txt", DocumentMode::kBlankLine);
  PerplexityOptions options;
  options.seqlen = 32;
  options.max_windows = 3;
  auto plain = EvaluatePerplexity(*model_, tokens, options);
  torch::NoGradGuard no_grad;
  auto prefix = model_->BuildPrefixKv(torch::tensor({int64_t{1}}).view({1, 1}));
  ASSERT_TRUE(prefix.ok());
  options.prefix = &*prefix;
  auto prefixed = EvaluatePerplexity(*model_, tokens, options);
  ASSERT_TRUE(plain.ok() && prefixed.ok());
  EXPECT_EQ(prefixed->predictions, plain->predictions);
  EXPECT_NE(prefixed->mean_nll, plain->mean_nll);
  EXPECT_TRUE(std::isfinite(prefixed->mean_nll));
}

TEST_F(PerplexityTest, TokenStreamBosIsExplicit) {
  const std::string text = "One day, a cat sat.\n\n  The dog ran.  \n";
  auto with = BuildTokenStream(*tokenizer_, text, DocumentMode::kBlankLine);
  auto without = BuildTokenStream(*tokenizer_, text, DocumentMode::kBlankLine, false);
  auto first = tokenizer_->Encode("One day, a cat sat.");
  auto second = tokenizer_->Encode("The dog ran.");
  ASSERT_TRUE(with.ok() && without.ok() && first.ok() && second.ok());
  std::vector<int32_t> expected = {1};
  expected.insert(expected.end(), first->begin(), first->end());
  expected.push_back(1);
  expected.insert(expected.end(), second->begin(), second->end());
  EXPECT_EQ(*with, expected);
  EXPECT_EQ(without->size(), expected.size() - 2);
  EXPECT_EQ(std::count(without->begin(), without->end(), 1), 0);
}

TEST_F(PerplexityTest, RejectsStreamsWithoutAWindow) {
  PerplexityOptions options;
  options.seqlen = 16;
  EXPECT_FALSE(EvaluatePerplexity(*model_, std::vector<int32_t>(15, 1), options).ok());
  options.seqlen = 1;
  EXPECT_FALSE(EvaluatePerplexity(*model_, std::vector<int32_t>(15, 1), options).ok());
}

TEST(TokenStreamTest, ReadsTextWithNormalizedLineEndings) {
  const std::string path = std::string(QUANTD_BINARY_DIR) + "/token_stream_crlf.txt";
  {
    std::ofstream out(path, std::ios::binary);
    out << "a\r\nb\rc\n\r\n";
  }
  auto text = ReadTextFile(path);
  ASSERT_TRUE(text.ok());
  EXPECT_EQ(*text, "a\nb\nc\n\n");
  EXPECT_EQ(ReadTextFile(path + ".missing").status().code(), absl::StatusCode::kNotFound);
  const auto folder = ReadTextFile(QUANTD_BINARY_DIR);
  EXPECT_EQ(folder.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(folder.status().message().find("is a folder"), std::string::npos) << folder.status();
}

TEST(TokenStreamTest, SplitsParagraphsOnBlankLines) {
  const auto paragraphs = SplitParagraphs("  one\ntwo  \n\n \t\nthree\n\n\n  four  ");
  ASSERT_EQ(paragraphs.size(), 3u);
  EXPECT_EQ(paragraphs[0], "one\ntwo");
  EXPECT_EQ(paragraphs[1], "three");
  EXPECT_EQ(paragraphs[2], "four");
  EXPECT_TRUE(SplitParagraphs("\n \n").empty());
  EXPECT_TRUE(ParseDocumentMode("blank-line").ok());
  // The job spec's name and the older command-line one.
  EXPECT_EQ(*ParseDocumentMode("whole"), DocumentMode::kWholeFile);
  EXPECT_EQ(*ParseDocumentMode("whole-file"), DocumentMode::kWholeFile);
  EXPECT_FALSE(ParseDocumentMode("lines").ok());
}

}  // namespace
}  // namespace quantd::eval
