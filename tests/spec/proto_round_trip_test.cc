// The wire and JSON forms of the API messages carry every field.
#include "google/protobuf/util/message_differencer.h"
#include "gtest/gtest.h"
#include "proto/spec/defaults.h"
#include "proto/spec/spec_file.h"
#include "quantd/v1/quantize_service.pb.h"
#include "quantd/v1/worker_service.pb.h"

namespace quantd {
namespace {

using google::protobuf::util::MessageDifferencer;

v1::JobSpec FullSpec() {
  v1::JobSpec spec;
  spec.mutable_model()->set_path("/models/m");
  spec.mutable_calibration()->set_dataset_path("/data/d.txt");
  spec.mutable_quant()->set_wbits(4);
  spec.mutable_quant()->set_input_mode(v1::QUANT_MODE_STATIC);
  spec.mutable_prefix()->set_trainable(true);
  spec.mutable_prefix()->add_target_layers(3);
  spec.mutable_eval()->add_compare("rtn");
  (*spec.mutable_labels())["team"] = "llm";
  ApplyDefaults(&spec);
  return spec;
}

TEST(ProtoRoundTripTest, JobSpecBinary) {
  const v1::JobSpec spec = FullSpec();
  v1::JobSpec parsed;
  ASSERT_TRUE(parsed.ParseFromString(spec.SerializeAsString()));
  EXPECT_TRUE(MessageDifferencer::Equals(spec, parsed));
  // Explicit presence survives the wire: a zero that was set stays set.
  v1::JobSpec zero;
  zero.mutable_calibration()->set_val_size(0);
  ASSERT_TRUE(parsed.ParseFromString(zero.SerializeAsString()));
  EXPECT_TRUE(parsed.calibration().has_val_size());
}

TEST(ProtoRoundTripTest, JobSpecThroughJsonSpecFile) {
  const v1::JobSpec spec = FullSpec();
  v1::JobSpec parsed;
  ASSERT_TRUE(ParseSpecText(ToJson(spec, /*pretty=*/true), &parsed).ok());
  EXPECT_TRUE(MessageDifferencer::Equals(spec, parsed))
      << ToJson(spec, false) << "\n" << ToJson(parsed, false);
}

TEST(ProtoRoundTripTest, JobEventOneofs) {
  v1::JobEvent event;
  event.set_job_id("j-000001");
  event.set_sequence(17);
  auto* loss = event.mutable_loss();
  loss->set_phase(v1::PHASE_TRAIN_PREFIX);
  loss->set_step(3);
  loss->set_loss(1.25);
  (*loss->mutable_components())["outlier"] = 1.0;
  v1::JobEvent parsed;
  ASSERT_TRUE(parsed.ParseFromString(event.SerializeAsString()));
  EXPECT_EQ(parsed.kind_case(), v1::JobEvent::kLoss);
  EXPECT_EQ(parsed.loss().components().at("outlier"), 1.0);
  EXPECT_TRUE(MessageDifferencer::Equals(event, parsed));
}

TEST(ProtoRoundTripTest, WorkerProtocolMessages) {
  v1::WorkerMessage hello;
  hello.mutable_hello()->set_worker_id("node1-gpu0");
  auto* device = hello.mutable_hello()->add_devices();
  device->set_id("cuda:0");
  device->set_total_memory_bytes(int64_t{80} << 30);
  auto* running = hello.mutable_hello()->add_running_jobs();
  running->set_job_id("j-000002");
  running->set_acked_sequence(41);
  v1::WorkerMessage parsed;
  ASSERT_TRUE(parsed.ParseFromString(hello.SerializeAsString()));
  EXPECT_TRUE(MessageDifferencer::Equals(hello, parsed));

  v1::SubmitJobRequest request;
  *request.mutable_spec() = FullSpec();
  request.set_request_id("pipeline-run-7");
  v1::SubmitJobRequest request_parsed;
  ASSERT_TRUE(request_parsed.ParseFromString(request.SerializeAsString()));
  EXPECT_TRUE(MessageDifferencer::Equals(request, request_parsed));
}

TEST(ProtoRoundTripTest, GarbageBytesAreRejectedNotCrashing) {
  v1::JobSpec spec;
  const std::string garbage = "\xff\xff\xff\xff\xff\x0f garbage";
  EXPECT_FALSE(spec.ParseFromString(garbage));
}

}  // namespace
}  // namespace quantd
