#include "proto/spec/spec_file.h"

#include <cstdio>
#include <fstream>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "proto/spec/validate.h"

namespace quantd {
namespace {

using ::testing::HasSubstr;
using ::testing::StartsWith;

// The seed command of DESIGN.md §3 written as a job file.
constexpr char kSeedSpec[] = R"(
model:
  path: /models/Llama-2-7b-hf
calibration:
  dataset_path: /data/wikitext2-train.raw
  train_size: 512
  val_size: 64
  training_seqlen: 1024
  seed: 42
quant:
  wbits: 4
  w_group_size: 128
  input_bits: 4
  input_mode: static
  k_bits: 4
  v_bits: 4
  kv_group_size: 128
  kv_mode: static
  activation_clipping: true
  mse_init: true
rotation:
  pre_rotate: true
  rotate_mode: hadamard
  down_online_had: true
  qk_online_had: true
prefix:
  enabled: true
  trainable: true
  len: 8
  lr: 1e-3
  epochs: 8
  outlier_threshold: 64
training:
  epochs: 10
  quant_lr: 5e-5
  weight_lr: 5e-6
  batch_size: 1
eval:
  eval_ppl: true
  ppl_seqlen: 2048
  compare: [rtn, rotation, prefixquant]
)";

TEST(SpecFileTest, ParsesTheSeedCommand) {
  v1::JobSpec spec;
  ASSERT_TRUE(ParseSpecText(kSeedSpec, &spec).ok());
  EXPECT_EQ(spec.model().path(), "/models/Llama-2-7b-hf");
  EXPECT_EQ(spec.calibration().seed(), 42);
  EXPECT_EQ(spec.quant().wbits(), 4);
  EXPECT_EQ(spec.quant().input_mode(), v1::QUANT_MODE_STATIC);
  EXPECT_EQ(spec.quant().kv_mode(), v1::QUANT_MODE_STATIC);
  EXPECT_TRUE(spec.quant().mse_init());
  EXPECT_TRUE(spec.rotation().qk_online_had());
  EXPECT_EQ(spec.prefix().len(), 8);
  EXPECT_DOUBLE_EQ(spec.prefix().lr(), 1e-3);
  EXPECT_EQ(spec.training().batch_size(), 1);
  ASSERT_EQ(spec.eval().compare_size(), 3);
  EXPECT_EQ(spec.eval().compare(2), "prefixquant");
  EXPECT_TRUE(ValidateSpec(spec).ok());
}

TEST(SpecFileTest, JsonIsAcceptedToo) {
  v1::JobSpec spec;
  ASSERT_TRUE(ParseSpecText(R"({"model": {"path": "m"}, "quant": {"kv_mode": "QUANT_MODE_STATIC",
                               "wbits": 8}})",
                            &spec)
                  .ok());
  EXPECT_EQ(spec.quant().wbits(), 8);
  EXPECT_EQ(spec.quant().kv_mode(), v1::QUANT_MODE_STATIC);
}

TEST(SpecFileTest, UnknownKeyIsNamedWithItsPath) {
  v1::JobSpec spec;
  const absl::Status status = ParseSpecText("quant:\n  wbitz: 4\n", &spec);
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(status.message()), StartsWith("quant.wbitz: unknown key"));
  EXPECT_THAT(std::string(status.message()), HasSubstr("wbits"));
}

TEST(SpecFileTest, WrongTypesAreNamed) {
  v1::JobSpec spec;
  EXPECT_THAT(std::string(ParseSpecText("quant:\n  wbits: four\n", &spec).message()),
              StartsWith("quant.wbits: expected an integer"));
  EXPECT_THAT(std::string(ParseSpecText("quant:\n  mse_init: maybe\n", &spec).message()),
              StartsWith("quant.mse_init: expected true or false"));
  EXPECT_THAT(std::string(ParseSpecText("quant:\n  kv_mode: sometimes\n", &spec).message()),
              StartsWith("quant.kv_mode: unknown value \"sometimes\" (one of: static, dynamic)"));
  EXPECT_THAT(std::string(ParseSpecText("quant: 4\n", &spec).message()),
              StartsWith("quant: expected a mapping"));
}

TEST(SpecFileTest, MalformedYamlGivesLine) {
  v1::JobSpec spec;
  const absl::Status status = ParseSpecText("model:\n  path: [unclosed\n", &spec);
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(status.message()), HasSubstr("line"));
}

TEST(SpecFileTest, OverridesReplaceValuesAndLists) {
  v1::JobSpec spec;
  ASSERT_TRUE(ParseSpecText(kSeedSpec, &spec).ok());
  ASSERT_TRUE(ApplyOverrides({"quant.wbits=8", "prefix.len=4", "eval.compare=[rtn]",
                              "quant.kv_mode=dynamic"},
                             &spec)
                  .ok());
  EXPECT_EQ(spec.quant().wbits(), 8);
  EXPECT_EQ(spec.quant().input_bits(), 4);  // untouched
  EXPECT_EQ(spec.prefix().len(), 4);
  ASSERT_EQ(spec.eval().compare_size(), 1);
  EXPECT_EQ(spec.quant().kv_mode(), v1::QUANT_MODE_DYNAMIC);
  EXPECT_THAT(std::string(ApplyOverrides({"quant.wbitz=8"}, &spec).message()),
              HasSubstr("quant.wbitz: unknown key"));
  EXPECT_FALSE(ApplyOverrides({"novalue"}, &spec).ok());
}

TEST(SpecFileTest, LoadSpecFileReportsMissingFileAndNamesFile) {
  EXPECT_EQ(LoadSpecFile("/nonexistent/job.yaml").status().code(), absl::StatusCode::kNotFound);
  const std::string path = ::testing::TempDir() + "/bad_job.yaml";
  std::ofstream(path) << "model:\n  paht: x\n";
  const auto loaded = LoadSpecFile(path);
  EXPECT_EQ(loaded.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(loaded.status().message()), StartsWith(path + ": model.paht"));
  std::remove(path.c_str());
}

}  // namespace
}  // namespace quantd
