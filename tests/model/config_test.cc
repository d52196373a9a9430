#include "worker/model/config.h"

#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "tests/model/test_dirs.h"

namespace quantd::model {
namespace {

using ::testing::HasSubstr;

nlohmann::json Base() {
  return {{"architectures", {"LlamaForCausalLM"}},
          {"hidden_size", 64},
          {"intermediate_size", 172},
          {"num_hidden_layers", 2},
          {"num_attention_heads", 8},
          {"vocab_size", 100}};
}

absl::StatusOr<LlamaConfig> Parse(const nlohmann::json& j) {
  return ParseLlamaConfig(j.dump(), "test.json");
}

TEST(ConfigTest, ReadsRealConfig) {
  auto config = LoadLlamaConfig(testing::Stories260K());
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(config->hidden_size, 64);
  EXPECT_EQ(config->intermediate_size, 172);
  EXPECT_EQ(config->num_hidden_layers, 5);
  EXPECT_EQ(config->num_attention_heads, 8);
  EXPECT_EQ(config->num_key_value_heads, 4);
  EXPECT_EQ(config->head_dim, 8);
  EXPECT_EQ(config->vocab_size, 512);
  EXPECT_TRUE(config->tie_word_embeddings);
  EXPECT_DOUBLE_EQ(config->rms_norm_eps, 1e-5);
  EXPECT_EQ(config->bos_token_id, 1);
  EXPECT_EQ(config->eos_token_ids, (std::vector<int64_t>{2}));
  EXPECT_EQ(config->rope_scaling.type, RopeScaling::Type::kNone);
}

TEST(ConfigTest, DefaultsAndLlama3Fields) {
  auto j = Base();
  j["architectures"] = {"MistralForCausalLM"};
  j["num_key_value_heads"] = 2;
  j["rope_scaling"] = {{"rope_type", "llama3"},
                       {"factor", 8.0},
                       {"low_freq_factor", 1.0},
                       {"high_freq_factor", 4.0},
                       {"original_max_position_embeddings", 8192}};
  j["eos_token_id"] = {128001, 128009};
  j["rope_theta"] = 500000.0;
  auto config = Parse(j);
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(config->num_key_value_heads, 2);
  EXPECT_EQ(config->rope_scaling.type, RopeScaling::Type::kLlama3);
  EXPECT_DOUBLE_EQ(config->rope_scaling.factor, 8.0);
  EXPECT_EQ(config->eos_token_ids, (std::vector<int64_t>{128001, 128009}));
  EXPECT_DOUBLE_EQ(config->rope_theta, 500000.0);
  EXPECT_FALSE(config->tie_word_embeddings);

  auto plain = Parse(Base());
  ASSERT_TRUE(plain.ok());
  EXPECT_EQ(plain->num_key_value_heads, 8);
}

TEST(ConfigTest, RejectsBadConfigs) {
  struct Case {
    const char* key;
    nlohmann::json value;  // null removes the key
    const char* message;
  };
  const std::vector<Case> cases = {
      {"architectures", {"GPT2LMHeadModel"}, "GPT2LMHeadModel\" is not supported"},
      {"architectures", nullptr, "architectures"},
      {"hidden_size", nullptr, "\"hidden_size\" is missing"},
      {"hidden_size", -4, "positive integer"},
      {"num_attention_heads", 6, "must divide hidden_size"},
      {"num_key_value_heads", 3, "must divide num_attention_heads"},
      {"hidden_act", "gelu", "silu"},
      {"rope_scaling", {{"type", "yarn"}, {"factor", 4.0}}, "\"yarn\""},
      {"rms_norm_eps", "small", "positive number"},
      {"tie_word_embeddings", 1, "true or false"},
  };
  for (const auto& c : cases) {
    auto j = Base();
    if (c.value.is_null()) {
      j.erase(c.key);
    } else {
      j[c.key] = c.value;
    }
    auto config = Parse(j);
    ASSERT_FALSE(config.ok()) << c.key;
    EXPECT_THAT(std::string(config.status().message()), HasSubstr(c.message)) << c.key;
    EXPECT_THAT(std::string(config.status().message()), HasSubstr("test.json")) << c.key;
  }
  EXPECT_FALSE(ParseLlamaConfig("[]", "x").ok());
  EXPECT_FALSE(ParseLlamaConfig("{", "x").ok());
}

}  // namespace
}  // namespace quantd::model
