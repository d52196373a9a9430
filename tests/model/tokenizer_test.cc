// The sentencepiece tokenizer against two independent encoders: the reference ids recorded
// with sentencepiece 0.1.97 (tokenizers/reference-encodings.json) and libsentencepiece
// itself, run in this LibTorch-free binary over real text.
#include "worker/model/tokenizer.h"

#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "tests/model/sentencepiece_backend.h"
#include "worker/model/sentencepiece_model.h"

namespace quantd::model {
namespace {

using ::testing::HasSubstr;

std::string Data(const std::string& relative) {
  return std::string(QUANTD_SHARED_DATA) + "/" + relative;
}

std::string ReadAll(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

std::unique_ptr<Tokenizer> Load(const std::string& relative) {
  auto tokenizer = LoadSentencePieceTokenizer(Data(relative));
  EXPECT_TRUE(tokenizer.ok()) << tokenizer.status();
  return tokenizer.ok() ? std::move(tokenizer).value() : nullptr;
}

TEST(SentencePieceTest, MatchesRecordedReferenceEncodings) {
  auto tokenizer = Load("tokenizers/llama2/tokenizer.model");
  ASSERT_NE(tokenizer, nullptr);
  EXPECT_EQ(tokenizer->vocab_size(), 32000);
  EXPECT_EQ(tokenizer->bos_id(), 1);
  EXPECT_EQ(tokenizer->eos_id(), 2);
  auto cases = nlohmann::json::parse(ReadAll(Data("tokenizers/reference-encodings.json")));
  ASSERT_EQ(cases.size(), 7u);
  for (const auto& c : cases) {
    const std::string text = c["text"].get<std::string>();
    auto ids = tokenizer->Encode(text);
    ASSERT_TRUE(ids.ok());
    EXPECT_EQ(*ids, c["llama2_sentencepiece"].get<std::vector<int32_t>>()) << text;
  }
}

// Every paragraph of both text files, with both vocabularies, through both encoders.
TEST(SentencePieceTest, AgreesWithLibSentencePiece) {
  std::vector<std::string> texts;
  for (const char* file : {"text/wikitext2-test.raw", "text/tinystories-valid-subset.txt"}) {
    const std::string all = ReadAll(Data(file));
    ASSERT_FALSE(all.empty()) << file;
    std::stringstream lines(all.substr(0, 200000));
    std::string line;
    while (std::getline(lines, line)) texts.push_back(line);
    texts.push_back(all.substr(0, 60000));  // a long multi-line document
  }
  texts.push_back("  double  spaces\tand\ttabs  ");
  texts.push_back("");
  for (const char* model :
       {"tokenizers/llama2/tokenizer.model", "models/stories260K/tokenizer.model"}) {
    auto ours = Load(model);
    ASSERT_NE(ours, nullptr);
    spm::Backend oracle;
    std::string error;
    ASSERT_TRUE(oracle.Load(Data(model), &error)) << error;
    int checked = 0;
    for (const auto& text : texts) {
      std::vector<int> expected;
      ASSERT_TRUE(oracle.Encode(text, &expected, &error)) << error;
      auto ids = ours->Encode(text);
      ASSERT_TRUE(ids.ok());
      ASSERT_EQ(*ids, std::vector<int32_t>(expected.begin(), expected.end()))
          << model << ": " << text.substr(0, 200);
      std::string expected_text;
      ASSERT_TRUE(oracle.Decode(expected, &expected_text, &error)) << error;
      auto decoded = ours->Decode(*ids);
      ASSERT_TRUE(decoded.ok());
      ASSERT_EQ(*decoded, expected_text) << model;
      ++checked;
    }
    EXPECT_GT(checked, 1000);
  }
}

TEST(SentencePieceTest, BadFilesAreErrors) {
  auto missing = LoadSentencePieceTokenizer(Data("tokenizers/nope.model"));
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kNotFound);
  // A config.json is not a protobuf.
  auto not_proto = LoadSentencePieceTokenizer(Data("models/stories260K/config.json"));
  EXPECT_FALSE(not_proto.ok());
  auto truncated = ParseSentencePieceModel(
      ReadAll(Data("models/stories260K/tokenizer.model")).substr(0, 1001), "cut.model");
  ASSERT_FALSE(truncated.ok());
  EXPECT_THAT(std::string(truncated.status().message()), HasSubstr("cut.model"));
  auto tokenizer = Load("models/stories260K/tokenizer.model");
  ASSERT_NE(tokenizer, nullptr);
  EXPECT_FALSE(tokenizer->Decode({512}).ok());
}

}  // namespace
}  // namespace quantd::model
