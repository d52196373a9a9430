#include "worker/model/llama.h"

#include <map>
#include <memory>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/model/test_dirs.h"

namespace quantd::model {
namespace {

using ::testing::HasSubstr;

class LlamaTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    auto loaded = LlamaModel::Load(testing::Stories260K());
    ASSERT_TRUE(loaded.ok()) << loaded.status();
    model_ = std::move(loaded).value().release();
  }
  static void TearDownTestSuite() {
    delete model_;
    model_ = nullptr;
  }

  static torch::Tensor Logits(const torch::Tensor& ids, const KvCache* past = nullptr) {
    ForwardRequest request;
    request.input_ids = ids;
    request.past = past;
    auto result = model_->Forward(request);
    EXPECT_TRUE(result.ok()) << result.status();
    return result.ok() ? result->logits : torch::Tensor();
  }

  static torch::Tensor Ids(std::vector<int64_t> ids) {
    const int64_t n = static_cast<int64_t>(ids.size());
    return torch::tensor(ids, torch::kInt64).view({1, n});
  }

  static LlamaModel* model_;
  torch::NoGradGuard no_grad_;
};

LlamaModel* LlamaTest::model_ = nullptr;

// Reference: the top five next-token probabilities after BOS (shared/data/README.md).
TEST_F(LlamaTest, TopFiveAfterBosMatchReference) {
  auto probs = torch::softmax(Logits(Ids({1}))[0][0].to(torch::kFloat64), -1);
  auto top = probs.topk(5);
  const std::vector<int64_t> ids = {403, 385, 410, 317, 407};
  const std::vector<double> expected = {0.7837, 0.1555, 0.0156, 0.0111, 0.0078};
  for (int i = 0; i < 5; ++i) {
    EXPECT_EQ(std::get<1>(top)[i].item<int64_t>(), ids[i]) << i;
    EXPECT_NEAR(std::get<0>(top)[i].item<double>(), expected[i], 2e-4) << i;
  }
}

TEST_F(LlamaTest, PrefixKvThenTokensEqualsOnePass) {
  const std::vector<int64_t> all = {1, 403, 407, 261, 378, 432, 383, 286, 261, 376, 298};
  auto full = Logits(Ids(all));
  const int64_t p = 4;
  auto prefix = model_->BuildPrefixKv(Ids({all.begin(), all.begin() + p}));
  ASSERT_TRUE(prefix.ok()) << prefix.status();
  EXPECT_EQ(prefix->length(), p);
  auto rest = Logits(Ids({all.begin() + p, all.end()}), &*prefix);
  EXPECT_TRUE(torch::allclose(rest, full.narrow(1, p, all.size() - p), 1e-4, 1e-4));

  // A batch-1 prefix is shared by every sequence of a batch.
  auto batch = torch::cat({Ids({all.begin() + p, all.end()}), Ids({all.begin() + p, all.end()})});
  auto batched = Logits(batch, &*prefix);
  EXPECT_TRUE(torch::allclose(batched[1], rest[0], 1e-4, 1e-4));
}

TEST_F(LlamaTest, EmbeddingsInputEqualsIds) {
  auto ids = Ids({1, 403, 407, 261});
  ForwardRequest request;
  request.input_embeds = model_->Embed(ids);
  auto result = model_->Forward(request);
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_TRUE(torch::allclose(result->logits, Logits(ids), 1e-5, 1e-5));

  // A prefix given as embeddings builds the same KV cache as its ids.
  auto from_embeds = model_->BuildPrefixKv(model_->Embed(Ids({1, 403})));
  auto from_ids = model_->BuildPrefixKv(Ids({1, 403}));
  ASSERT_TRUE(from_embeds.ok() && from_ids.ok());
  EXPECT_TRUE(torch::allclose(from_embeds->layers[4].v, from_ids->layers[4].v, 1e-5, 1e-5));
}

TEST_F(LlamaTest, BatchRowsAreIndependent) {
  auto a = Ids({1, 403, 407, 261, 378});
  auto b = Ids({1, 385, 410, 317, 407});
  auto both = Logits(torch::cat({a, b}));
  EXPECT_TRUE(torch::allclose(both[0], Logits(a)[0], 1e-5, 1e-5));
  EXPECT_TRUE(torch::allclose(both[1], Logits(b)[0], 1e-5, 1e-5));
  // Causality: a later token does not change earlier logits.
  auto shorter = Logits(Ids({1, 403, 407}));
  EXPECT_TRUE(torch::allclose(shorter[0], Logits(a)[0].narrow(0, 0, 3), 1e-5, 1e-5));
}

class RecordingObserver : public ActivationObserver {
 public:
  bool Wants(int layer, ActivationSite site) const override {
    return layer == 2 || site == ActivationSite::kBlockOutput;
  }
  void Observe(int layer, ActivationSite site, const torch::Tensor& x) override {
    seen[{layer, static_cast<int>(site)}] = x.sizes().vec();
    if (site == ActivationSite::kDownProjInput) down_input = x.clone();
  }
  std::map<std::pair<int, int>, std::vector<int64_t>> seen;
  torch::Tensor down_input;
};

TEST_F(LlamaTest, ObserverSeesRequestedActivations) {
  RecordingObserver observer;
  ForwardRequest request;
  request.input_ids = torch::cat({Ids({1, 403, 407}), Ids({1, 385, 410})});
  request.observer = &observer;
  auto result = model_->Forward(request);
  ASSERT_TRUE(result.ok());
  EXPECT_TRUE(torch::equal(result->logits, Logits(request.input_ids)));
  // Layer 2: all five sites; other layers: only the block output.
  EXPECT_EQ(observer.seen.size(), 5u + 4u);
  using S = ActivationSite;
  EXPECT_EQ(observer.seen.at({2, int(S::kQkvInput)}), (std::vector<int64_t>{2, 3, 64}));
  EXPECT_EQ(observer.seen.at({2, int(S::kOProjInput)}), (std::vector<int64_t>{2, 3, 64}));
  EXPECT_EQ(observer.seen.at({2, int(S::kUpGateInput)}), (std::vector<int64_t>{2, 3, 64}));
  EXPECT_EQ(observer.seen.at({2, int(S::kDownProjInput)}), (std::vector<int64_t>{2, 3, 172}));
  EXPECT_EQ(observer.seen.at({0, int(S::kBlockOutput)}), (std::vector<int64_t>{2, 3, 64}));
  EXPECT_EQ(observer.seen.count({0, int(S::kQkvInput)}), 0u);
  // The down_proj input observed is what down_proj receives.
  auto* down = dynamic_cast<DenseLinear*>(model_->blocks[2].down_proj.get());
  ASSERT_NE(down, nullptr);
  EXPECT_EQ(observer.down_input.size(-1), down->in_features());
}

// A layer wrapper as a quantized replacement would be: it sees every call and can change the
// output.
class ScaledLinear : public LinearLayer {
 public:
  ScaledLinear(std::shared_ptr<LinearLayer> inner, double scale)
      : inner_(std::move(inner)), scale_(scale) {}
  torch::Tensor Forward(const torch::Tensor& x) override {
    ++calls;
    return inner_->Forward(x) * scale_;
  }
  int64_t in_features() const override { return inner_->in_features(); }
  int64_t out_features() const override { return inner_->out_features(); }
  std::vector<torch::Tensor*> StateTensors() override { return inner_->StateTensors(); }
  int calls = 0;

 private:
  std::shared_ptr<LinearLayer> inner_;
  double scale_;
};

class CountingTransform : public AttentionTransform {
 public:
  void Apply(int, torch::Tensor*, torch::Tensor* k, torch::Tensor* v) override {
    ++calls;
    *k = *k * 1.0;
    *v = *v * 0.5;
  }
  std::vector<torch::Tensor*> StateTensors() override { return {}; }
  int calls = 0;
};

TEST_F(LlamaTest, LayersAndKvPathAreSwappable) {
  auto ids = Ids({1, 403, 407, 261});
  auto reference = Logits(ids);
  LlamaBlock& block = model_->blocks[1];
  auto original_down = block.down_proj;

  auto identity = std::make_shared<ScaledLinear>(original_down, 1.0);
  block.down_proj = identity;
  EXPECT_TRUE(torch::allclose(Logits(ids), reference, 1e-6, 1e-6));
  EXPECT_EQ(identity->calls, 1);
  block.down_proj = std::make_shared<ScaledLinear>(original_down, 0.0);
  EXPECT_FALSE(torch::allclose(Logits(ids), reference, 1e-3, 1e-3));
  block.down_proj = original_down;

  auto transform = std::make_shared<CountingTransform>();
  block.attention_transform = transform;
  ForwardRequest request;
  request.input_ids = ids;
  request.return_kv = true;
  auto result = model_->Forward(request);
  block.attention_transform = nullptr;
  ASSERT_TRUE(result.ok());
  EXPECT_EQ(transform->calls, 1);
  EXPECT_FALSE(torch::allclose(result->logits, reference, 1e-3, 1e-3));
  auto plain = model_->BuildPrefixKv(ids);
  ASSERT_TRUE(plain.ok());
  // The returned cache holds what the transform produced.
  EXPECT_TRUE(torch::allclose(result->kv.layers[1].v, plain->layers[1].v * 0.5, 1e-6, 1e-6));
  EXPECT_TRUE(torch::allclose(Logits(ids), reference, 0, 0));
}

TEST_F(LlamaTest, BadRequestsAreErrors) {
  ForwardRequest none;
  EXPECT_THAT(std::string(model_->Forward(none).status().message()), HasSubstr("exactly one"));
  ForwardRequest out_of_range;
  out_of_range.input_ids = Ids({1, 512});
  EXPECT_THAT(std::string(model_->Forward(out_of_range).status().message()),
              HasSubstr("token id 512"));
  ForwardRequest bad_embeds;
  bad_embeds.input_embeds = torch::zeros({1, 2, 63});
  EXPECT_FALSE(model_->Forward(bad_embeds).ok());
  KvCache short_cache;
  short_cache.layers.resize(2);
  ForwardRequest bad_past;
  bad_past.input_ids = Ids({1});
  bad_past.past = &short_cache;
  EXPECT_THAT(std::string(model_->Forward(bad_past).status().message()), HasSubstr("2 layers"));
}

TEST(LlamaLoadTest, MissingTensorAndShapeErrorsNameTheTensor) {
  auto config = LoadLlamaConfig(testing::Stories260K());
  ASSERT_TRUE(config.ok());
  auto checkpoint = Checkpoint::Open(testing::Stories260K());
  ASSERT_TRUE(checkpoint.ok());
  LlamaConfig wider = *config;
  wider.intermediate_size = 180;
  auto model = LlamaModel::FromCheckpoint(wider, **checkpoint);
  ASSERT_FALSE(model.ok());
  EXPECT_THAT(std::string(model.status().message()),
              HasSubstr("model.layers.0.mlp.gate_proj.weight': shape [172, 64] disagrees"));
  LlamaConfig untied = *config;
  untied.tie_word_embeddings = false;
  model = LlamaModel::FromCheckpoint(untied, **checkpoint);
  ASSERT_FALSE(model.ok());
  EXPECT_THAT(std::string(model.status().message()), HasSubstr("lm_head.weight"));
}

}  // namespace
}  // namespace quantd::model

namespace quantd::model {
namespace {

TEST(LlamaWindowTest, SlidingWindowLimitsAttention) {
  auto config = LoadLlamaConfig(testing::Stories260K());
  auto checkpoint = Checkpoint::Open(testing::Stories260K());
  ASSERT_TRUE(config.ok() && checkpoint.ok());
  auto full = LlamaModel::FromCheckpoint(*config, **checkpoint);
  LlamaConfig windowed_config = *config;
  windowed_config.sliding_window = 4;
  auto windowed = LlamaModel::FromCheckpoint(windowed_config, **checkpoint);
  ASSERT_TRUE(full.ok() && windowed.ok());
  torch::NoGradGuard no_grad;
  ForwardRequest request;
  request.input_ids =
      torch::tensor(std::vector<int64_t>{1, 403, 407, 261, 378, 432, 383, 286}).view({1, 8});
  auto a = (*full)->Forward(request);
  auto b = (*windowed)->Forward(request);
  ASSERT_TRUE(a.ok() && b.ok());
  // The first four positions see at most four keys either way; later ones lose the oldest.
  EXPECT_TRUE(torch::allclose(a->logits.narrow(1, 0, 4), b->logits.narrow(1, 0, 4)));
  EXPECT_FALSE(torch::allclose(a->logits.narrow(1, 4, 4), b->logits.narrow(1, 4, 4), 1e-3, 1e-3));
}

TEST(LlamaDeviceTest, CudaMatchesCpu_CUDA) {
  if (!torch::cuda::is_available()) GTEST_SKIP() << "no CUDA device";
  LoadOptions options;
  options.device = torch::Device(torch::kCUDA);
  auto cpu = LlamaModel::Load(testing::Stories260K());
  auto gpu = LlamaModel::Load(testing::Stories260K(), options);
  ASSERT_TRUE(cpu.ok() && gpu.ok()) << gpu.status();
  torch::NoGradGuard no_grad;
  ForwardRequest request;
  request.input_ids = torch::tensor(std::vector<int64_t>{1, 403, 407, 261, 378}).view({1, 5});
  auto a = (*cpu)->Forward(request);
  auto b = (*gpu)->Forward(request);
  ASSERT_TRUE(a.ok() && b.ok()) << b.status();
  EXPECT_TRUE(b->logits.is_cuda());
  EXPECT_TRUE(torch::allclose(a->logits, b->logits.cpu(), 1e-4, 1e-4));
}

}  // namespace
}  // namespace quantd::model
