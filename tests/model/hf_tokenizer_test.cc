// tokenizer.json BPE against the reference ids of tokenizers/reference-encodings.json
// (transformers.js on the same files) and against the sentencepiece tokenizer through a
// tokenizer.json derived here from the Llama-2 tokenizer.model.
#include <algorithm>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "worker/model/sentencepiece_model.h"
#include "worker/model/tokenizer.h"

namespace quantd::model {
namespace {

using nlohmann::json;
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

std::string Scratch(const std::string& name) {
  return std::string(QUANTD_BINARY_DIR) + "/hf_tokenizer_test_" + name;
}

void CheckReference(const std::string& file, const std::string& key, int32_t bos, int32_t eos) {
  auto tokenizer = LoadHfTokenizer(Data(file));
  ASSERT_TRUE(tokenizer.ok()) << tokenizer.status();
  EXPECT_EQ((*tokenizer)->bos_id(), bos);
  EXPECT_EQ((*tokenizer)->eos_id(), eos);
  auto cases = json::parse(ReadAll(Data("tokenizers/reference-encodings.json")));
  for (const auto& c : cases) {
    const std::string text = c["text"].get<std::string>();
    auto ids = (*tokenizer)->Encode(text);
    ASSERT_TRUE(ids.ok());
    EXPECT_EQ(*ids, c[key].get<std::vector<int32_t>>()) << key << ": " << text;
    auto decoded = (*tokenizer)->Decode(*ids);
    ASSERT_TRUE(decoded.ok());
    EXPECT_EQ(*decoded, text) << key;
  }
}

TEST(HfTokenizerTest, MistralSentencePieceStyleBpeMatchesReference) {
  CheckReference("tokenizers/mistral/tokenizer.json", "mistral_tokenizer_json", 1, 2);
}

TEST(HfTokenizerTest, Llama3ByteLevelBpeMatchesReference) {
  CheckReference("tokenizers/llama3/tokenizer.json", "llama3_tokenizer_json", 128000, 128001);
}

TEST(HfTokenizerTest, AddedTokensAreMatchedVerbatim) {
  auto tokenizer = LoadHfTokenizer(Data("tokenizers/llama3/tokenizer.json"));
  ASSERT_TRUE(tokenizer.ok());
  auto plain = (*tokenizer)->Encode("Hello world");
  auto marked = (*tokenizer)->Encode("<|begin_of_text|>Hello world<|end_of_text|>");
  ASSERT_TRUE(plain.ok() && marked.ok());
  std::vector<int32_t> expected = {128000};
  expected.insert(expected.end(), plain->begin(), plain->end());
  expected.push_back(128001);
  EXPECT_EQ(*marked, expected);
  auto decoded = (*tokenizer)->Decode(*marked);  // special tokens are dropped
  ASSERT_TRUE(decoded.ok());
  EXPECT_EQ(*decoded, "Hello world");
}

// Builds the tokenizer.json that Hugging Face's converter makes from a sentencepiece BPE
// model: the same vocabulary, merges ordered by the score of the piece they produce.
json DeriveTokenizerJson(const SentencePieceModel& model) {
  json vocab = json::object();
  std::vector<std::pair<float, std::pair<std::string, std::string>>> merges;
  for (size_t id = 0; id < model.pieces.size(); ++id) vocab[model.pieces[id].text] = id;
  for (const auto& piece : model.pieces) {
    if (piece.type != SentencePieceModel::PieceType::kNormal) continue;
    for (size_t cut = 1; cut < piece.text.size(); ++cut) {
      const std::string left = piece.text.substr(0, cut);
      const std::string right = piece.text.substr(cut);
      if (vocab.contains(left) && vocab.contains(right)) {
        merges.push_back({piece.score, {left, right}});
      }
    }
  }
  std::stable_sort(merges.begin(), merges.end(),
                   [](const auto& a, const auto& b) { return a.first > b.first; });
  json merge_list = json::array();
  for (const auto& m : merges) merge_list.push_back(m.second.first + " " + m.second.second);
  return {
      {"added_tokens",
       {{{"id", 0}, {"content", "<unk>"}, {"special", true}},
        {{"id", 1}, {"content", "<s>"}, {"special", true}},
        {{"id", 2}, {"content", "</s>"}, {"special", true}}}},
      {"normalizer",
       {{"type", "Sequence"},
        {"normalizers",
         {{{"type", "Prepend"}, {"prepend", "\xE2\x96\x81"}},
          {{"type", "Replace"}, {"pattern", {{"String", " "}}}, {"content", "\xE2\x96\x81"}}}}}},
      {"pre_tokenizer", nullptr},
      {"decoder",
       {{"type", "Sequence"},
        {"decoders",
         {{{"type", "Replace"}, {"pattern", {{"String", "\xE2\x96\x81"}}}, {"content", " "}},
          {{"type", "ByteFallback"}},
          {{"type", "Fuse"}},
          {{"type", "Strip"}, {"content", " "}, {"start", 1}, {"stop", 0}}}}}},
      {"model",
       {{"type", "BPE"},
        {"unk_token", "<unk>"},
        {"byte_fallback", true},
        {"fuse_unk", true},
        {"vocab", vocab},
        {"merges", merge_list}}}};
}

TEST(HfTokenizerTest, DerivedLlama2TokenizerJsonAgreesWithTokenizerModel) {
  const std::string bytes = ReadAll(Data("tokenizers/llama2/tokenizer.model"));
  auto model = ParseSentencePieceModel(bytes, "llama2");
  ASSERT_TRUE(model.ok()) << model.status();
  const std::string path = Scratch("llama2.json");
  {
    std::ofstream out(path, std::ios::binary);
    out << DeriveTokenizerJson(*model).dump();
  }
  auto from_json = LoadHfTokenizer(path);
  ASSERT_TRUE(from_json.ok()) << from_json.status();
  auto from_model = LoadSentencePieceTokenizer(Data("tokenizers/llama2/tokenizer.model"));
  ASSERT_TRUE(from_model.ok());
  EXPECT_EQ((*from_json)->bos_id(), 1);

  std::stringstream lines(ReadAll(Data("text/wikitext2-test.raw")).substr(0, 100000));
  std::string line;
  int compared = 0;
  while (std::getline(lines, line)) {
    if (line.empty() || line == "\r") continue;
    auto a = (*from_json)->Encode(line);
    auto b = (*from_model)->Encode(line);
    ASSERT_TRUE(a.ok() && b.ok());
    ASSERT_EQ(*a, *b) << line;
    ++compared;
  }
  EXPECT_GT(compared, 100);
}

TEST(HfTokenizerTest, UnsupportedOrBrokenFilesAreErrors) {
  struct Case {
    std::string content;
    absl::StatusCode code;
    const char* message;
  };
  const std::vector<Case> cases = {
      {"{", absl::StatusCode::kInvalidArgument, "not a JSON object"},
      {R"({"model":{"type":"WordPiece","vocab":{"a":0}}})", absl::StatusCode::kUnimplemented,
       "only BPE"},
      {R"({"model":{"type":"BPE","vocab":{}}})", absl::StatusCode::kInvalidArgument, "vocab"},
      {R"({"model":{"type":"BPE","vocab":{"a":0},"merges":["a"]}})",
       absl::StatusCode::kInvalidArgument, "merge"},
      {R"({"model":{"type":"BPE","vocab":{"a":0}},"pre_tokenizer":{"type":"Digits"}})",
       absl::StatusCode::kUnimplemented, "Digits"},
      {R"({"model":{"type":"BPE","vocab":{"a":0}},"pre_tokenizer":{"type":"Split",
          "pattern":{"Regex":"(unclosed"},"behavior":"Isolated"}})",
       absl::StatusCode::kInvalidArgument, "does not compile"},
      {R"({"model":{"type":"BPE","vocab":{"a":0},"byte_fallback":true}})",
       absl::StatusCode::kInvalidArgument, "<0xXX>"},
  };
  for (size_t i = 0; i < cases.size(); ++i) {
    const std::string path = Scratch("bad" + std::to_string(i) + ".json");
    {
      std::ofstream out(path, std::ios::binary);
      out << cases[i].content;
    }
    auto tokenizer = LoadHfTokenizer(path);
    ASSERT_FALSE(tokenizer.ok()) << cases[i].content;
    EXPECT_EQ(tokenizer.status().code(), cases[i].code) << tokenizer.status();
    EXPECT_THAT(std::string(tokenizer.status().message()), HasSubstr(cases[i].message));
  }
  EXPECT_EQ(LoadHfTokenizer(Scratch("missing.json")).status().code(), absl::StatusCode::kNotFound);
}

}  // namespace
}  // namespace quantd::model
