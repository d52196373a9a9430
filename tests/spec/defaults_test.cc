#include "proto/spec/defaults.h"

#include "google/protobuf/util/message_differencer.h"
#include "gtest/gtest.h"

namespace quantd {
namespace {

TEST(ApplyDefaultsTest, MatchesThePrefixQuantCommandLine) {
  v1::JobSpec spec;
  spec.mutable_model()->set_path("/models/Llama-2-7b-hf/");
  ApplyDefaults(&spec);
  EXPECT_EQ(spec.model().name(), "Llama-2-7b-hf");
  EXPECT_EQ(spec.quant().wbits(), 16);
  EXPECT_EQ(spec.quant().w_group_size(), -1);
  EXPECT_EQ(spec.quant().input_bits(), 16);
  EXPECT_EQ(spec.quant().input_mode(), v1::QUANT_MODE_DYNAMIC);
  EXPECT_EQ(spec.quant().kv_group_size(), 128);
  EXPECT_EQ(spec.quant().kv_mode(), v1::QUANT_MODE_DYNAMIC);
  EXPECT_EQ(spec.calibration().train_size(), 512);
  EXPECT_EQ(spec.calibration().val_size(), 64);
  EXPECT_EQ(spec.calibration().training_seqlen(), 1024);
  EXPECT_EQ(spec.calibration().seed(), 2);
  EXPECT_EQ(spec.prefix().outlier_threshold(), 64.0);
  EXPECT_EQ(spec.prefix().lr(), 1e-3);
  EXPECT_EQ(spec.prefix().epochs(), 20);
  EXPECT_EQ(spec.prefix().mode(), v1::PREFIX_MODE_DISCRETE);
  EXPECT_EQ(spec.prefix().loss_site(), "block_output");
  EXPECT_EQ(spec.training().quant_lr(), 5e-5);
  EXPECT_EQ(spec.training().weight_lr(), 5e-6);
  EXPECT_EQ(spec.eval().ppl_seqlen(), 2048);
  EXPECT_EQ(spec.resources().max_memory(), "65GiB");
}

TEST(ApplyDefaultsTest, KeepsExplicitValuesIncludingZero) {
  v1::JobSpec spec;
  spec.mutable_quant()->set_wbits(4);
  spec.mutable_calibration()->set_val_size(0);
  spec.mutable_training()->set_weight_lr(0);
  ApplyDefaults(&spec);
  EXPECT_EQ(spec.quant().wbits(), 4);
  EXPECT_EQ(spec.calibration().val_size(), 0);
  EXPECT_EQ(spec.training().weight_lr(), 0);
}

TEST(ApplyDefaultsTest, IsIdempotent) {
  v1::JobSpec once;
  once.mutable_model()->set_path("m");
  ApplyDefaults(&once);
  v1::JobSpec twice = once;
  ApplyDefaults(&twice);
  EXPECT_TRUE(google::protobuf::util::MessageDifferencer::Equals(once, twice));
}

}  // namespace
}  // namespace quantd
