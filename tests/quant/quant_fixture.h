// Test helpers: the shared stories260K model (a fresh copy per call, since tests rotate and
// quantize it in place), its tokenizer and TinyStories token windows.
#ifndef QUANTD_TESTS_QUANT_QUANT_FIXTURE_H_
#define QUANTD_TESTS_QUANT_QUANT_FIXTURE_H_

#include <memory>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "worker/eval/token_stream.h"
#include "worker/model/llama.h"
#include "worker/model/tokenizer.h"

namespace quantd::quant::testing {

inline std::string SharedData(const std::string& relative) {
  return std::string(QUANTD_SHARED_DATA) + "/" + relative;
}

inline std::string StoriesDir() { return SharedData("models/stories260K"); }

inline std::unique_ptr<model::LlamaModel> LoadModel(const std::string& dir = StoriesDir()) {
  auto model = model::LlamaModel::Load(dir);
  EXPECT_TRUE(model.ok()) << model.status();
  return model.ok() ? std::move(model).value() : nullptr;
}

// The TinyStories subset as one BOS-per-story token stream (the first `chars` characters).
inline std::vector<int32_t> StoryTokens(size_t chars = 60000) {
  auto tokenizer = model::LoadTokenizer(StoriesDir());
  EXPECT_TRUE(tokenizer.ok());
  auto text = eval::ReadTextFile(SharedData("text/tinystories-valid-subset.txt"));
  EXPECT_TRUE(text.ok());
  auto tokens =
      eval::BuildTokenStream(**tokenizer, text->substr(0, chars), eval::DocumentMode::kBlankLine);
  EXPECT_TRUE(tokens.ok());
  return tokens.ok() ? *tokens : std::vector<int32_t>{};
}

inline torch::Tensor Ids(const std::vector<int32_t>& ids) {
  return torch::tensor(std::vector<int64_t>(ids.begin(), ids.end()), torch::kInt64).unsqueeze(0);
}

inline torch::Tensor Logits(model::LlamaModel& model, const std::vector<int32_t>& ids,
                            const model::KvCache* past = nullptr) {
  torch::NoGradGuard no_grad;
  model::ForwardRequest request;
  request.input_ids = Ids(ids);
  request.past = past;
  auto result = model.Forward(request);
  EXPECT_TRUE(result.ok()) << result.status();
  return result.ok() ? result->logits[0] : torch::Tensor();
}

}  // namespace quantd::quant::testing

#endif  // QUANTD_TESTS_QUANT_QUANT_FIXTURE_H_
