// A checkpoint in another layout, derived here from the real stories260K: two shards behind
// model.safetensors.index.json, a separate lm_head.weight (tie_word_embeddings false), and
// GQA ratio 1 (each KV head duplicated for the two query heads that share it), stored as F32
// and as BF16. Its outputs must equal the original's (F32) or agree within bf16's precision.
#include <filesystem>
#include <fstream>
#include <iterator>
#include <limits>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "tests/model/safetensors_writer.h"
#include "tests/model/test_dirs.h"
#include "worker/model/llama.h"

namespace quantd::model {
namespace {

using testing::BuildSafetensors;
using testing::RawTensor;
using testing::WriteFile;

std::string Bytes(const torch::Tensor& t) {
  auto c = t.contiguous();
  return std::string(static_cast<const char*>(c.data_ptr()), c.nbytes());
}

// Writes the derived checkpoint to `dir` with tensors stored as `dtype` ("F32" or "BF16").
void WriteDerived(const std::string& dir, const std::string& dtype) {
  const std::string source = testing::Stories260K();
  auto config_text = [&] {
    std::ifstream in(source + "/config.json");
    return nlohmann::json::parse(in);
  }();
  auto checkpoint = Checkpoint::Open(source);
  ASSERT_TRUE(checkpoint.ok());
  const int64_t heads = config_text["num_attention_heads"];
  const int64_t kv_heads = config_text["num_key_value_heads"];
  const int64_t head_dim = config_text["hidden_size"].get<int64_t>() / heads;
  const torch::ScalarType type = dtype == "BF16" ? torch::kBFloat16 : torch::kFloat32;

  std::vector<RawTensor> shards[2];
  nlohmann::json weight_map = nlohmann::json::object();
  auto add = [&](const std::string& name, torch::Tensor t) {
    const int shard = name.find("layers.") != std::string::npos &&
                              name.find("layers.0.") == std::string::npos &&
                              name.find("layers.1.") == std::string::npos
                          ? 1
                          : 0;
    shards[shard].push_back({name, dtype, t.sizes().vec(), Bytes(t.to(type))});
    weight_map[name] =
        shard == 0 ? "model-00001-of-00002.safetensors" : "model-00002-of-00002.safetensors";
  };
  for (const auto& name : (*checkpoint)->TensorNames()) {
    auto t = (*checkpoint)->Load(name, torch::kFloat32);
    ASSERT_TRUE(t.ok());
    torch::Tensor w = *t;
    if (name.find("k_proj") != std::string::npos || name.find("v_proj") != std::string::npos) {
      // Query head h reads KV head h / (heads / kv_heads): repeat each KV head's rows.
      w = w.view({kv_heads, 1, head_dim, -1})
              .expand({kv_heads, heads / kv_heads, head_dim, w.size(1)})
              .reshape({heads * head_dim, w.size(1)});
    }
    add(name, w);
    if (name == "model.embed_tokens.weight") add("lm_head.weight", w.clone());
  }
  WriteFile(dir + "/model-00001-of-00002.safetensors", BuildSafetensors(shards[0]));
  WriteFile(dir + "/model-00002-of-00002.safetensors", BuildSafetensors(shards[1]));
  WriteFile(dir + "/model.safetensors.index.json",
            nlohmann::json({{"metadata", {{"total_size", 0}}}, {"weight_map", weight_map}}).dump());
  config_text["num_key_value_heads"] = heads;
  config_text["tie_word_embeddings"] = false;
  config_text["torch_dtype"] = dtype == "BF16" ? "bfloat16" : "float32";
  WriteFile(dir + "/config.json", config_text.dump(2));
}

torch::Tensor Logits(LlamaModel& model, const torch::Tensor& ids) {
  ForwardRequest request;
  request.input_ids = ids;
  auto result = model.Forward(request);
  EXPECT_TRUE(result.ok()) << result.status();
  return result.ok() ? result->logits.to(torch::kFloat32) : torch::Tensor();
}

class AlternateLayoutTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto original = LlamaModel::Load(testing::Stories260K());
    ASSERT_TRUE(original.ok());
    original_ = std::move(original).value();
    ids_ = torch::tensor(std::vector<int64_t>{1, 403, 407, 261, 378, 432, 383, 286, 261, 376, 298,
                                              315, 421, 395, 317, 426})
               .view({2, 8});
    reference_ = Logits(*original_, ids_);
  }

  std::unique_ptr<LlamaModel> original_;
  torch::Tensor ids_;
  torch::Tensor reference_;
  torch::NoGradGuard no_grad_;
};

TEST_F(AlternateLayoutTest, F32ShardsUntiedFullKvHeadsEqualOriginal) {
  const std::string dir = testing::ScratchDir();
  WriteDerived(dir, "F32");
  auto config = LoadLlamaConfig(dir);
  ASSERT_TRUE(config.ok());
  EXPECT_EQ(config->num_key_value_heads, config->num_attention_heads);
  EXPECT_FALSE(config->tie_word_embeddings);
  auto derived = LlamaModel::Load(dir);
  ASSERT_TRUE(derived.ok()) << derived.status();
  EXPECT_TRUE(torch::allclose(Logits(**derived, ids_), reference_, 1e-5, 1e-4));
}

TEST_F(AlternateLayoutTest, Bf16ShardsAgreeWithinBf16Precision) {
  const std::string dir = testing::ScratchDir();
  WriteDerived(dir, "BF16");
  auto probs_ref = torch::softmax(reference_, -1);
  // BF16 weights computed in float32, and entirely in bfloat16.
  for (auto compute : {torch::kFloat32, torch::kBFloat16}) {
    LoadOptions options;
    options.dtype = compute;
    auto derived = LlamaModel::Load(dir, options);
    ASSERT_TRUE(derived.ok()) << derived.status();
    auto logits = Logits(**derived, ids_);
    // bf16 keeps 8 significant bits (relative step 2^-8 = 0.0039). Measured: logits move by
    // up to 0.08 (bf16 weights) / 0.2 (bf16 compute), probabilities by 0.003 / 0.01.
    const bool f32 = compute == torch::kFloat32;
    EXPECT_LT((logits - reference_).abs().max().item<double>(), f32 ? 0.15 : 0.4);
    EXPECT_LT((torch::softmax(logits, -1) - probs_ref).abs().max().item<double>(),
              f32 ? 0.01 : 0.03);
    EXPECT_GT((logits - reference_).abs().max().item<double>(), 0.0);  // really rounded
    // The greedy choice agrees at nearly every position.
    auto agree = (logits.argmax(-1) == reference_.argmax(-1)).to(torch::kFloat32).mean();
    EXPECT_GE(agree.item<double>(), 0.9);
  }
}

// A checkpoint with NaN weights is refused at load, naming the tensor, instead of running to
// NaN perplexities and meaningless accuracies that look like results.
TEST(NonFiniteWeightsTest, AreRefusedAtLoadByName) {
  const std::string source = testing::Stories260K();
  auto checkpoint = Checkpoint::Open(source);
  ASSERT_TRUE(checkpoint.ok());
  std::vector<RawTensor> tensors;
  for (const auto& name : (*checkpoint)->TensorNames()) {
    auto t = (*checkpoint)->Load(name, torch::kFloat32);
    ASSERT_TRUE(t.ok());
    torch::Tensor w = t->clone();
    if (name == "model.layers.1.mlp.down_proj.weight") {
      w.view({-1}).narrow(0, 0, 64).fill_(std::numeric_limits<float>::quiet_NaN());
    }
    tensors.push_back({name, "F32", w.sizes().vec(), Bytes(w)});
  }
  const std::string dir = testing::ScratchDir();
  WriteFile(dir + "/model.safetensors", BuildSafetensors(tensors));
  std::ifstream config(source + "/config.json");
  WriteFile(dir + "/config.json", std::string(std::istreambuf_iterator<char>(config), {}));
  auto loaded = LlamaModel::Load(dir);
  ASSERT_FALSE(loaded.ok());
  EXPECT_EQ(loaded.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(loaded.status().message().find(
                "model.layers.1.mlp.down_proj.weight: 64 of 11008 values are not finite"),
            std::string::npos)
      << loaded.status();
}

// A config.json that declares fewer layers than the checkpoint holds (another model's config)
// is refused rather than loading a model with its last blocks silently missing.
TEST(ConfigMismatchTest, FewerLayersThanTheCheckpointIsRefused) {
  const std::string source = testing::Stories260K();
  const std::string dir = testing::ScratchDir();
  std::filesystem::copy_file(source + "/model.safetensors", dir + "/model.safetensors",
                             std::filesystem::copy_options::overwrite_existing);
  nlohmann::json config = [&] {
    std::ifstream in(source + "/config.json");
    return nlohmann::json::parse(in);
  }();
  const int layers = config["num_hidden_layers"];
  config["num_hidden_layers"] = layers - 1;
  WriteFile(dir + "/config.json", config.dump(2));
  auto loaded = LlamaModel::Load(dir);
  ASSERT_FALSE(loaded.ok());
  EXPECT_EQ(loaded.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(loaded.status().message().find("model.layers." + std::to_string(layers - 1) + "."),
            std::string::npos)
      << loaded.status();
  EXPECT_NE(loaded.status().message().find("num_hidden_layers is " + std::to_string(layers - 1)),
            std::string::npos)
      << loaded.status();
}

}  // namespace
}  // namespace quantd::model
