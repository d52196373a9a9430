#include "worker/model/checkpoint.h"

#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/model/safetensors_writer.h"
#include "tests/model/test_dirs.h"

namespace quantd::model {
namespace {

using testing::BuildSafetensors;
using testing::BytesOf;
using ::testing::HasSubstr;
using testing::RawTensor;
using testing::ScratchDir;
using testing::WriteFile;

std::string Message(const absl::Status& status) { return std::string(status.message()); }

TEST(CheckpointTest, LoadsRealModelTensor) {
  auto checkpoint = Checkpoint::Open(testing::Stories260K());
  ASSERT_TRUE(checkpoint.ok()) << checkpoint.status();
  EXPECT_TRUE((*checkpoint)->Contains("model.embed_tokens.weight"));
  EXPECT_EQ((*checkpoint)->TensorNames().size(), 2u + 5u * 9u);
  auto t = (*checkpoint)->Load("model.norm.weight", torch::kFloat32, {64});
  ASSERT_TRUE(t.ok()) << t.status();
  EXPECT_EQ(t->sizes(), (std::vector<int64_t>{64}));
  EXPECT_TRUE(torch::isfinite(*t).all().item<bool>());
  EXPECT_GT(t->abs().sum().item<float>(), 0.0f);
}

TEST(CheckpointTest, SameDtypeLoadsAliasTheFileWithoutChangingIt) {
  const std::string dir = ScratchDir();
  WriteFile(dir + "/model.safetensors",
            BuildSafetensors({{"w", "F32", {4}, BytesOf(std::vector<float>{1, 2, 3, 4})}}));
  auto checkpoint = Checkpoint::Open(dir);
  ASSERT_TRUE(checkpoint.ok());
  auto a = (*checkpoint)->Load("w", torch::kFloat32);
  auto b = (*checkpoint)->Load("w", torch::kFloat32);
  auto c = (*checkpoint)->Load("w", torch::kBFloat16);
  ASSERT_TRUE(a.ok() && b.ok() && c.ok());
  EXPECT_EQ(a->data_ptr(), b->data_ptr());  // no copy
  EXPECT_NE(a->data_ptr(), c->data_ptr());  // cast
  a->mul_(10);                              // copy-on-write pages: the file is untouched
  EXPECT_FLOAT_EQ(b->sum().item<float>(), 100.0f);
  checkpoint->reset();
  EXPECT_FLOAT_EQ(a->sum().item<float>(), 100.0f);  // outlives the Checkpoint
  auto reopened = Checkpoint::Open(dir);
  ASSERT_TRUE(reopened.ok());
  EXPECT_FLOAT_EQ((*reopened)->Load("w", torch::kFloat32)->sum().item<float>(), 10.0f);
}

TEST(CheckpointTest, ConvertsHalfTypesAndUnalignedData) {
  const std::string dir = ScratchDir();
  auto source = torch::linspace(-3.0, 5.0, 12, torch::kFloat32).reshape({3, 4});
  auto f16 = source.to(torch::kFloat16).contiguous();
  auto bf16 = source.to(torch::kBFloat16).contiguous();
  auto bytes = [](const torch::Tensor& t) {
    return std::string(static_cast<const char*>(t.data_ptr()), t.nbytes());
  };
  // pad_to 1 leaves the data section at an arbitrary (odd) offset.
  WriteFile(dir + "/model.safetensors", BuildSafetensors({{"h", "F16", {3, 4}, bytes(f16)},
                                                          {"b", "BF16", {3, 4}, bytes(bf16)},
                                                          {"f", "F32", {3, 4}, bytes(source)}},
                                                         /*pad_to=*/1));
  auto checkpoint = Checkpoint::Open(dir);
  ASSERT_TRUE(checkpoint.ok()) << checkpoint.status();
  auto h = (*checkpoint)->Load("h", torch::kFloat32);
  auto b = (*checkpoint)->Load("b", torch::kFloat32);
  auto f = (*checkpoint)->Load("f", torch::kBFloat16);
  ASSERT_TRUE(h.ok() && b.ok() && f.ok());
  EXPECT_TRUE(torch::equal(*h, f16.to(torch::kFloat32)));
  EXPECT_TRUE(torch::equal(*b, bf16.to(torch::kFloat32)));
  EXPECT_EQ(f->scalar_type(), torch::kBFloat16);
  EXPECT_TRUE(torch::equal(*f, bf16));
}

TEST(CheckpointTest, ReportsBadTensorsByName) {
  const std::string dir = ScratchDir();
  WriteFile(dir + "/model.safetensors",
            BuildSafetensors({{"ids", "I64", {2}, BytesOf(std::vector<int64_t>{1, 2})},
                              {"w", "F32", {2}, BytesOf(std::vector<float>{1, 2})}}));
  auto checkpoint = Checkpoint::Open(dir);
  ASSERT_TRUE(checkpoint.ok()) << checkpoint.status();

  auto ids = (*checkpoint)->Load("ids", torch::kFloat32);
  ASSERT_FALSE(ids.ok());
  EXPECT_EQ(ids.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(Message(ids.status()), HasSubstr("tensor 'ids'"));
  EXPECT_THAT(Message(ids.status()), HasSubstr("model.safetensors"));
  EXPECT_THAT(Message(ids.status()), HasSubstr("I64"));

  auto missing = (*checkpoint)->Load("nope", torch::kFloat32);
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(Message(missing.status()), HasSubstr("'nope'"));

  auto shape = (*checkpoint)->Load("w", torch::kFloat32, {3});
  ASSERT_FALSE(shape.ok());
  EXPECT_THAT(Message(shape.status()), HasSubstr("tensor 'w': shape [2] disagrees"));
}

TEST(CheckpointTest, TruncatedFileFailsOnOpen) {
  const std::string dir = ScratchDir();
  std::string file = BuildSafetensors({{"w", "F32", {4}, std::string(16, '\0')}});
  WriteFile(dir + "/model.safetensors", file.substr(0, file.size() - 5));
  auto checkpoint = Checkpoint::Open(dir);
  ASSERT_FALSE(checkpoint.ok());
  EXPECT_THAT(Message(checkpoint.status()), HasSubstr("tensor 'w'"));
  EXPECT_THAT(Message(checkpoint.status()), HasSubstr(dir + "/model.safetensors"));
}

TEST(CheckpointTest, EmptyDirectoryIsNotFound) {
  auto checkpoint = Checkpoint::Open(ScratchDir());
  EXPECT_EQ(checkpoint.status().code(), absl::StatusCode::kNotFound);
}

void WriteShards(const std::string& dir, const std::string& index) {
  WriteFile(dir + "/a.safetensors",
            BuildSafetensors({{"x", "F32", {2}, BytesOf(std::vector<float>{1, 2})}}));
  WriteFile(dir + "/b.safetensors",
            BuildSafetensors({{"y", "F16", {1}, std::string("\x00\x3c", 2)}}));
  WriteFile(dir + "/model.safetensors.index.json", index);
}

TEST(CheckpointTest, ReadsShardedIndex) {
  const std::string dir = ScratchDir();
  WriteShards(dir, R"({"metadata":{},"weight_map":{"x":"a.safetensors","y":"b.safetensors"}})");
  auto checkpoint = Checkpoint::Open(dir);
  ASSERT_TRUE(checkpoint.ok()) << checkpoint.status();
  auto x = (*checkpoint)->Load("x", torch::kFloat32);
  auto y = (*checkpoint)->Load("y", torch::kFloat32);
  ASSERT_TRUE(x.ok() && y.ok());
  EXPECT_FLOAT_EQ(x->sum().item<float>(), 3.0f);
  EXPECT_FLOAT_EQ(y->item<float>(), 1.0f);  // 0x3c00 is 1.0 in half precision
}

TEST(CheckpointTest, ShardedIndexErrors) {
  struct Case {
    std::string index;
    const char* message;
  };
  const std::vector<Case> cases = {
      {R"({"weight_map":{"x":"a.safetensors","y":"a.safetensors"}})", "lacks tensor 'y'"},
      {R"({"weight_map":{"x":"missing.safetensors"}})", "missing.safetensors"},
      {R"({"weight_map":{"x":"../a.safetensors"}})", "not a plain file name"},
      {R"({"weight_map":{}})", "weight_map"},
      {R"({"weight_map":{"x":3}})", "'x'"},
      {R"(not json)", "not a JSON object"},
  };
  for (const auto& c : cases) {
    const std::string dir = ScratchDir();
    WriteShards(dir, c.index);
    auto checkpoint = Checkpoint::Open(dir);
    ASSERT_FALSE(checkpoint.ok()) << c.index;
    EXPECT_THAT(Message(checkpoint.status()), HasSubstr(c.message)) << c.index;
  }
}

}  // namespace
}  // namespace quantd::model
