#include "proto/spec/validate.h"

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "proto/spec/defaults.h"

namespace quantd {
namespace {

using ::testing::HasSubstr;
using ::testing::StartsWith;

v1::JobSpec MinimalSpec() {
  v1::JobSpec spec;
  spec.mutable_model()->set_path("/models/llama");
  spec.mutable_calibration()->set_dataset_path("/data/wiki.txt");
  return spec;
}

// Expects INVALID_ARGUMENT whose message starts with `field`.
void ExpectFieldError(const v1::JobSpec& spec, const std::string& field) {
  const absl::Status status = ValidateSpec(spec);
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument) << status;
  EXPECT_THAT(std::string(status.message()), StartsWith(field + ":")) << status;
}

TEST(ValidateSpecTest, MinimalSpecIsValid) { EXPECT_TRUE(ValidateSpec(MinimalSpec()).ok()); }

TEST(ValidateSpecTest, RequiresModelAndDatasetPaths) {
  v1::JobSpec spec = MinimalSpec();
  spec.mutable_model()->clear_path();
  ExpectFieldError(spec, "model.path");
  spec = MinimalSpec();
  spec.mutable_calibration()->clear_dataset_path();
  ExpectFieldError(spec, "calibration.dataset_path");
}

TEST(ValidateSpecTest, BitWidthsAreTwoToEightOrSixteen) {
  for (int bits : {2, 3, 4, 5, 6, 7, 8, 16}) {
    v1::JobSpec spec = MinimalSpec();
    spec.mutable_quant()->set_wbits(bits);
    spec.mutable_quant()->set_input_bits(bits);
    spec.mutable_quant()->set_k_bits(bits);
    spec.mutable_quant()->set_v_bits(bits);
    EXPECT_TRUE(ValidateSpec(spec).ok()) << bits;
  }
  for (int bits : {-1, 0, 1, 9, 12, 15, 17, 32}) {
    v1::JobSpec spec = MinimalSpec();
    spec.mutable_quant()->set_wbits(bits);
    ExpectFieldError(spec, "quant.wbits");
    spec = MinimalSpec();
    spec.mutable_quant()->set_input_bits(bits);
    ExpectFieldError(spec, "quant.input_bits");
    spec = MinimalSpec();
    spec.mutable_quant()->set_k_bits(bits);
    ExpectFieldError(spec, "quant.k_bits");
    spec = MinimalSpec();
    spec.mutable_quant()->set_v_bits(bits);
    ExpectFieldError(spec, "quant.v_bits");
  }
}

TEST(ValidateSpecTest, MessageSaysWhatWasGiven) {
  v1::JobSpec spec = MinimalSpec();
  spec.mutable_quant()->set_wbits(9);
  EXPECT_THAT(std::string(ValidateSpec(spec).message()), HasSubstr("got 9"));
}

TEST(ValidateSpecTest, PrefixLengthAtMost64) {
  v1::JobSpec spec = MinimalSpec();
  spec.mutable_prefix()->set_len(64);
  EXPECT_TRUE(ValidateSpec(spec).ok());
  spec.mutable_prefix()->set_len(65);
  ExpectFieldError(spec, "prefix.len");
  spec.mutable_prefix()->set_len(-1);
  ExpectFieldError(spec, "prefix.len");
}

TEST(ValidateSpecTest, SizesMustBePositive) {
  v1::JobSpec spec = MinimalSpec();
  spec.mutable_calibration()->set_train_size(0);
  ExpectFieldError(spec, "calibration.train_size");
  spec = MinimalSpec();
  spec.mutable_calibration()->set_training_seqlen(1);
  ExpectFieldError(spec, "calibration.training_seqlen");
  spec = MinimalSpec();
  spec.mutable_training()->set_batch_size(0);
  ExpectFieldError(spec, "training.batch_size");
  spec = MinimalSpec();
  spec.mutable_eval()->set_ppl_seqlen(0);
  ExpectFieldError(spec, "eval.ppl_seqlen");
  spec = MinimalSpec();
  spec.mutable_quant()->set_w_group_size(0);
  ExpectFieldError(spec, "quant.w_group_size");
  spec = MinimalSpec();
  spec.mutable_quant()->set_kv_group_size(-4);
  ExpectFieldError(spec, "quant.kv_group_size");
}

TEST(ValidateSpecTest, LearningRatesMustBeFinite) {
  v1::JobSpec spec = MinimalSpec();
  spec.mutable_prefix()->set_lr(0);
  ExpectFieldError(spec, "prefix.lr");
  spec = MinimalSpec();
  spec.mutable_training()->set_quant_lr(std::nan(""));
  ExpectFieldError(spec, "training.quant_lr");
  spec = MinimalSpec();
  spec.mutable_training()->set_weight_lr(0);  // 0 freezes weights: allowed
  EXPECT_TRUE(ValidateSpec(spec).ok());
}

TEST(ValidateSpecTest, OnlineHadamardNeedsPreRotate) {
  v1::JobSpec spec = MinimalSpec();
  spec.mutable_rotation()->set_down_online_had(true);
  ExpectFieldError(spec, "rotation.down_online_had");
  spec.mutable_rotation()->set_pre_rotate(true);
  EXPECT_TRUE(ValidateSpec(spec).ok());
}

TEST(ValidateSpecTest, EnumeratedStrings) {
  v1::JobSpec spec = MinimalSpec();
  spec.mutable_model()->set_dtype("int8");
  ExpectFieldError(spec, "model.dtype");
  spec = MinimalSpec();
  spec.mutable_calibration()->set_documents("lines");
  ExpectFieldError(spec, "calibration.documents");
  spec = MinimalSpec();
  spec.mutable_eval()->add_compare("gptq");
  ExpectFieldError(spec, "eval.compare[0]");
  spec = MinimalSpec();
  spec.mutable_rotation()->set_rotate_mode("givens");
  ExpectFieldError(spec, "rotation.rotate_mode");
  spec = MinimalSpec();
  spec.mutable_prefix()->set_loss_site("o_proj_input");
  ExpectFieldError(spec, "prefix.loss_site");
  spec.mutable_prefix()->set_loss_site("down_proj_input");
  EXPECT_TRUE(ValidateSpec(spec).ok());
}

TEST(ValidateSpecTest, MaxMemoryMustParse) {
  v1::JobSpec spec = MinimalSpec();
  spec.mutable_resources()->set_max_memory("lots");
  ExpectFieldError(spec, "resources.max_memory");
}

TEST(ValidateSpecForModelTest, GroupSizesMustDivideTheModel) {
  const ModelShape stories{64, 172, 8, 5};  // stories260K: d_ff 172 = 4 * 43
  v1::JobSpec spec = MinimalSpec();
  spec.mutable_quant()->set_wbits(4);
  spec.mutable_quant()->set_w_group_size(4);
  EXPECT_TRUE(ValidateSpecForModel(spec, stories).ok());
  spec.mutable_quant()->set_w_group_size(8);  // divides 64 but not 172
  const absl::Status status = ValidateSpecForModel(spec, stories);
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(status.message()), StartsWith("quant.w_group_size:"));
  EXPECT_THAT(std::string(status.message()), HasSubstr("intermediate_size (172)"));
  // Group sizes do not matter when weights are not quantized.
  spec.mutable_quant()->set_wbits(16);
  EXPECT_TRUE(ValidateSpecForModel(spec, stories).ok());
}

TEST(ValidateSpecForModelTest, KvGroupSizeAndTargetLayers) {
  const ModelShape shape{4096, 11008, 128, 32};
  v1::JobSpec spec = MinimalSpec();
  spec.mutable_quant()->set_k_bits(4);
  spec.mutable_quant()->set_kv_group_size(48);
  EXPECT_THAT(std::string(ValidateSpecForModel(spec, shape).message()),
              StartsWith("quant.kv_group_size:"));
  spec.mutable_quant()->set_kv_group_size(128);
  EXPECT_TRUE(ValidateSpecForModel(spec, shape).ok());
  spec.mutable_prefix()->add_target_layers(32);
  EXPECT_THAT(std::string(ValidateSpecForModel(spec, shape).message()),
              StartsWith("prefix.target_layers[0]:"));
}

TEST(ParseMemorySizeTest, Units) {
  EXPECT_EQ(*ParseMemorySize("65GiB"), int64_t{65} << 30);
  EXPECT_EQ(*ParseMemorySize("512MiB"), int64_t{512} << 20);
  EXPECT_EQ(*ParseMemorySize("40GB"), int64_t{40} * 1000 * 1000 * 1000);
  EXPECT_EQ(*ParseMemorySize("1024"), 1024);
  EXPECT_FALSE(ParseMemorySize("").ok());
  EXPECT_FALSE(ParseMemorySize("GiB").ok());
  EXPECT_FALSE(ParseMemorySize("12 parsecs").ok());
  EXPECT_FALSE(ParseMemorySize("99999999999TiB").ok());
}

}  // namespace
}  // namespace quantd
