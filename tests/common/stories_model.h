// The shared stories260K model and TinyStories text for the LibTorch suites: a fresh model per
// call (tests rotate, quantize or train it in place) and the text as a BOS-per-story stream.
#ifndef QUANTD_TESTS_COMMON_STORIES_MODEL_H_
#define QUANTD_TESTS_COMMON_STORIES_MODEL_H_

#include <memory>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "worker/eval/token_stream.h"
#include "worker/model/llama.h"
#include "worker/model/tokenizer.h"

namespace quantd::test_data {

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

}  // namespace quantd::test_data

#endif  // QUANTD_TESTS_COMMON_STORIES_MODEL_H_
