// GPU visibility, placement and OOM classification of a job (worker/pipeline/job_device.h).
#include "worker/pipeline/job_device.h"

#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <map>
#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/common/stories_job.h"
#include "worker/model/config.h"
#include "worker/model/device_choice.h"
#include "worker/pipeline/run_job.h"

namespace quantd::pipeline {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

const std::string kStories = std::string(QUANTD_SHARED_DATA) + "/models/stories260K";

TEST(JobDeviceTest, AssignedDevicesBecomeTheVisibleSet) {
  EXPECT_FALSE(VisibleDevicesFor({}).has_value());
  EXPECT_EQ(VisibleDevicesFor({"cuda:0", "cuda:2"}), "0,2");
  EXPECT_EQ(VisibleDevicesFor({"cpu"}), "");  // a CPU job sees no GPU
}

TEST(JobDeviceTest, AllocationFailuresAreOutOfMemory) {
  EXPECT_TRUE(IsOutOfMemory(absl::InternalError(
      "forward: CUDA out of memory. Tried to allocate 2.00 GiB. GPU 0 has a total capacity of "
      "79.10 GiB of which 1.2 GiB is free.")));
  EXPECT_TRUE(IsOutOfMemory(absl::InternalError(
      "[enforce fail at alloc_cpu.cpp:83] DefaultCPUAllocator: can't allocate memory")));
  EXPECT_FALSE(IsOutOfMemory(absl::InternalError("shape mismatch")));
  // A real allocation failure of LibTorch on the host is recognised from its own message.
  try {
    const torch::Tensor huge = torch::empty({int64_t{1} << 60}, torch::kFloat32);
    (void)huge;
    FAIL() << "allocated 4 EiB";
  } catch (const std::exception& error) {
    EXPECT_TRUE(IsOutOfMemory(absl::InternalError(error.what()))) << error.what();
  }
}

TEST(JobDeviceTest, ModelBytesCountsEveryWeight) {
  auto config = model::LoadLlamaConfig(kStories);
  ASSERT_TRUE(config.ok()) << config.status();
  // stories260K stores 260,032 fp32 parameters (tied embeddings) in model.safetensors.
  EXPECT_EQ(ModelBytes(*config, torch::kFloat32), 260032 * 4);
  EXPECT_EQ(ModelBytes(*config, torch::kBFloat16), 260032 * 2);
}

model::LlamaConfig Llama2_7b() {
  model::LlamaConfig config;
  config.hidden_size = 4096;
  config.intermediate_size = 11008;
  config.num_hidden_layers = 32;
  config.num_attention_heads = 32;
  config.num_key_value_heads = 32;
  config.head_dim = 128;
  config.vocab_size = 32000;
  return config;
}

PlacementLimits Limits(const std::string& max_memory, int copies = 1) {
  PlacementLimits limits;
  limits.max_memory = max_memory;
  limits.copies = copies;
  return limits;
}

TEST(JobDeviceTest, WeightsThatFitStayOnTheDevice) {
  const model::LlamaConfig llama2_7b = Llama2_7b();
  // 6.74e9 parameters: 12.55 GiB in bf16, 386 MiB per block.
  EXPECT_NEAR(ModelBytes(llama2_7b, torch::kBFloat16) / 1e9, 13.48, 0.01);
  EXPECT_NEAR(BlockBytes(llama2_7b, torch::kBFloat16) / 1e6, 404.8, 0.1);
  const torch::Device gpu(torch::kCUDA, 0);
  for (const char* limit : {"", "65GiB"}) {
    auto placement = PlanDevicePlacement(llama2_7b, torch::kBFloat16, gpu, Limits(limit));
    ASSERT_TRUE(placement.ok()) << placement.status();
    EXPECT_EQ(placement->streamed_blocks, 0) << limit;
    EXPECT_EQ(placement->device_bytes, ModelBytes(llama2_7b, torch::kBFloat16));
    EXPECT_EQ(placement->summary, "");
  }
  // The host has no max_memory bound here.
  auto on_cpu = PlanDevicePlacement(llama2_7b, torch::kBFloat16, torch::kCPU, Limits("8GiB"));
  ASSERT_TRUE(on_cpu.ok());
  EXPECT_EQ(on_cpu->streamed_blocks, 0);
}

TEST(JobDeviceTest, WeightsLargerThanMaxMemoryStreamTheLastBlocks) {
  const model::LlamaConfig llama2_7b = Llama2_7b();
  const torch::Device gpu(torch::kCUDA, 0);
  auto placement = PlanDevicePlacement(llama2_7b, torch::kBFloat16, gpu, Limits("8GiB"));
  ASSERT_TRUE(placement.ok()) << placement.status();
  // 8 GiB = embeddings and head (500 MiB) + 18 resident blocks + one streamed block in flight.
  EXPECT_EQ(placement->streamed_blocks, 14);
  EXPECT_LE(placement->device_bytes, int64_t{8} << 30);
  EXPECT_GT(placement->device_bytes + BlockBytes(llama2_7b, torch::kBFloat16), int64_t{8} << 30);
  EXPECT_THAT(placement->summary, HasSubstr("14 of 32 blocks stay in host memory"));
  EXPECT_THAT(placement->summary, HasSubstr("12.55 GiB"));
}

// A job that fine-tunes holds the model and its calibrated twin: each gets half the limit.
TEST(JobDeviceTest, TwoCopiesShareTheLimit) {
  const model::LlamaConfig llama2_7b = Llama2_7b();
  const torch::Device gpu(torch::kCUDA, 0);
  auto placement = PlanDevicePlacement(llama2_7b, torch::kBFloat16, gpu, Limits("16GiB", 2));
  ASSERT_TRUE(placement.ok()) << placement.status();
  EXPECT_EQ(placement->streamed_blocks, 14);  // as one copy in 8 GiB
  EXPECT_THAT(placement->summary, HasSubstr("2 copies of the model at once"));
  auto both_fit = PlanDevicePlacement(llama2_7b, torch::kBFloat16, gpu, Limits("26GiB", 2));
  ASSERT_TRUE(both_fit.ok());
  EXPECT_EQ(both_fit->streamed_blocks, 0);
  auto tight = PlanDevicePlacement(llama2_7b, torch::kBFloat16, gpu, Limits("1500MiB", 2));
  EXPECT_EQ(tight.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(tight.status().message(), HasSubstr("per copy"));
}

// Streamed blocks live in pinned host memory: more than the host has fails before loading.
TEST(JobDeviceTest, StreamingNeedsTheHostMemory) {
  const model::LlamaConfig llama2_7b = Llama2_7b();
  const torch::Device gpu(torch::kCUDA, 0);
  const int64_t block = BlockBytes(llama2_7b, torch::kBFloat16);
  PlacementLimits limits = Limits("8GiB");
  limits.host_available = 14 * block;
  auto fits = PlanDevicePlacement(llama2_7b, torch::kBFloat16, gpu, limits);
  ASSERT_TRUE(fits.ok()) << fits.status();
  EXPECT_EQ(fits->host_bytes, 14 * block);
  limits = Limits("16GiB", 2);
  limits.host_available = 20 * block;
  auto short_of_host = PlanDevicePlacement(llama2_7b, torch::kBFloat16, gpu, limits);
  ASSERT_FALSE(short_of_host.ok());
  EXPECT_TRUE(IsOutOfMemory(short_of_host.status()));
  EXPECT_THAT(short_of_host.status().message(), HasSubstr("14 of 32 blocks"));
  EXPECT_THAT(short_of_host.status().message(), HasSubstr("10.56 GiB of pinned host memory"));
  EXPECT_GT(HostAvailableBytes(), 0);  // this machine's /proc/meminfo
}

// The device's free memory bounds the weights too (a 24 GiB card under the default 65GiB):
// three quarters of it, the rest left for activations.
TEST(JobDeviceTest, TheDevicesFreeMemoryBoundsTheWeights) {
  const model::LlamaConfig llama2_7b = Llama2_7b();
  const torch::Device gpu(torch::kCUDA, 0);
  PlacementLimits limits = Limits("65GiB", 2);
  limits.device_free = int64_t{23} << 30;  // 0.75 x 23 GiB = 17.25 GiB, 8.6 GiB per copy
  auto placement = PlanDevicePlacement(llama2_7b, torch::kBFloat16, gpu, limits);
  ASSERT_TRUE(placement.ok()) << placement.status();
  EXPECT_EQ(placement->streamed_blocks, 12);
  EXPECT_THAT(placement->summary, HasSubstr("75 % of the 23.00 GiB free on the device"));
  limits.device_free = int64_t{80} << 30;  // 60 GiB usable: max_memory and the device agree
  placement = PlanDevicePlacement(llama2_7b, torch::kBFloat16, gpu, limits);
  ASSERT_TRUE(placement.ok());
  EXPECT_EQ(placement->streamed_blocks, 0);
  limits = Limits("");  // no max_memory at all: the device alone
  limits.device_free = int64_t{1} << 30;
  auto too_small = PlanDevicePlacement(llama2_7b, torch::kBFloat16, gpu, limits);
  EXPECT_EQ(too_small.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(too_small.status().message(), HasSubstr("free on the device"));
  EXPECT_EQ(DeviceFreeBytes(torch::kCPU), 0);
}

TEST(JobDeviceTest, DeviceFreeMemoryIsKnown_CUDA) {
  if (!torch::cuda::is_available()) GTEST_SKIP() << "no CUDA device";
  const int64_t free_bytes = DeviceFreeBytes(torch::Device(torch::kCUDA, 0));
  EXPECT_GT(free_bytes, int64_t{1} << 30);
  EXPECT_LT(free_bytes, int64_t{1} << 40);
  EXPECT_EQ(DeviceFreeBytes(torch::Device(torch::kCUDA, 99)), 0);
}

TEST(JobDeviceTest, TooLittleMemoryEvenToStreamFailsWithTheFigures) {
  const model::LlamaConfig llama2_7b = Llama2_7b();
  const torch::Device gpu(torch::kCUDA, 0);
  auto tight = PlanDevicePlacement(llama2_7b, torch::kBFloat16, gpu, Limits("800MiB"));
  ASSERT_FALSE(tight.ok());
  EXPECT_EQ(tight.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_TRUE(IsOutOfMemory(tight.status()));
  EXPECT_THAT(tight.status().message(), HasSubstr("12.55 GiB"));
  EXPECT_THAT(tight.status().message(), HasSubstr("800MiB (0.78 GiB)"));
  EXPECT_THAT(tight.status().message(), HasSubstr("would still need 0.87 GiB"));
  auto garbage = PlanDevicePlacement(llama2_7b, torch::kBFloat16, gpu, Limits("lots"));
  EXPECT_EQ(garbage.status().code(), absl::StatusCode::kInvalidArgument);
}

class MetricSink : public EventSink {
 public:
  absl::Status Emit(const v1::JobEvent& event) override {
    if (event.has_metric()) metrics[event.metric().name()] = event.metric().value();
    return absl::OkStatus();
  }
  std::map<std::string, double> metrics;
};

// Expects every ppl/ metric of `expected` in `actual`, within `relative`; returns how many.
int ComparePerplexities(const MetricSink& expected, const MetricSink& actual, double relative) {
  int compared = 0;
  for (const auto& [name, value] : expected.metrics) {
    // Zero-shot accuracies: the same answers, but a near tie may go the other way.
    if (name.rfind("acc/", 0) == 0) {
      const auto it = actual.metrics.find(name);
      EXPECT_NE(it, actual.metrics.end()) << name;
      if (it != actual.metrics.end()) {
        EXPECT_NEAR(it->second, value, 1.5 / 24) << name;
      }
    }
    if (name.rfind("ppl/", 0) != 0) continue;
    const auto it = actual.metrics.find(name);
    EXPECT_NE(it, actual.metrics.end()) << name;
    if (it != actual.metrics.end()) {
      EXPECT_NEAR(it->second, value, relative * value) << name;
    }
    ++compared;
  }
  return compared;
}

// W8A8KV8 with rotation and the detected prefix, the three compared variants and a zero-shot
// task (24 examples).
v1::JobSpec SmallJob() {
  test_data::StoriesJobShape shape;
  shape.eval_windows = 8;
  v1::JobSpec spec = test_data::StoriesQuantSpec(kStories, shape);
  for (const char* v : {"rtn", "rotation", "prefixquant"}) spec.mutable_eval()->add_compare(v);
  spec.mutable_eval()->set_eval_tasks(std::string(QUANTD_SOURCE_DIR) +
                                      "/client/examples/tasks/little-stories.jsonl");
  return spec;
}

TEST(JobDeviceTest, AJobAskingForCudaWithoutOneIsAUserError) {
  if (torch::cuda::is_available()) GTEST_SKIP() << "this machine has CUDA";
  MetricSink sink;
  CancellationToken cancel;
  RunJobOptions options;
  options.device = "cuda";
  const RunJobOutcome outcome = RunJob(SmallJob(), options, sink, cancel);
  EXPECT_EQ(outcome.reason, v1::FAILURE_REASON_USER_ERROR);
  EXPECT_THAT(outcome.status.message(), HasSubstr("no CUDA device"));
}

// A dtype the worker's device cannot compute in (float16 on the CPU with LibTorch 1.13) fails
// before the model loads, as the user's error, naming the field; a LibTorch that can, runs it.
TEST(JobDeviceTest, AComputeDtypeTheDeviceLacksIsAUserError) {
  MetricSink sink;
  CancellationToken cancel;
  RunJobOptions options;
  options.device = "cpu";
  v1::JobSpec spec = SmallJob();
  spec.mutable_model()->set_dtype("float16");
  spec.mutable_eval()->clear_eval_tasks();
  spec.mutable_eval()->clear_compare();
  if (model::CheckComputeDtype(torch::Device(torch::kCPU), torch::kFloat16).ok()) {
    GTEST_SKIP() << "this LibTorch computes in float16 on the CPU";
  }
  const RunJobOutcome outcome = RunJob(spec, options, sink, cancel);
  EXPECT_EQ(outcome.reason, v1::FAILURE_REASON_USER_ERROR);
  EXPECT_THAT(std::string(outcome.status.message()),
              HasSubstr("model.dtype: compute dtype float16 is not available on cpu"));
  EXPECT_THAT(std::string(outcome.status.message()), Not(HasSubstr("frame #")));
}

// The whole job on the GPU: every perplexity within 1 % of the same job on the CPU (fp32; the
// GPU's reductions differ in order, and static scales may round the other way).
TEST(JobDeviceTest, JobOnCudaMatchesTheCpu_CUDA) {
  if (!torch::cuda::is_available()) GTEST_SKIP() << "no CUDA device";
  MetricSink cpu_sink, gpu_sink;
  CancellationToken cancel;
  RunJobOptions cpu, gpu;
  cpu.device = "cpu";
  gpu.device = "cuda";
  const RunJobOutcome on_cpu = RunJob(SmallJob(), cpu, cpu_sink, cancel);
  const RunJobOutcome on_gpu = RunJob(SmallJob(), gpu, gpu_sink, cancel);
  ASSERT_TRUE(on_cpu.status.ok()) << on_cpu.status;
  ASSERT_TRUE(on_gpu.status.ok()) << on_gpu.status;
  // fp, fp_prefixed, quantized and the three variants
  EXPECT_GE(ComparePerplexities(cpu_sink, gpu_sink, 0.01), 6);
}

// The same job with a max_memory below the weights (1016 KiB in fp32): 4 of the 5 blocks are
// streamed from pinned host memory, and the figures stay those of the resident job: within
// 1e-3. On an H100 the full-precision perplexities agree to 1e-4 but the quantized ones differ by
// up to 4e-4: static scales are calibrated from activations whose last bits depend on the
// kernels cuBLAS picks, and one scale rounding the other way moves W8A8 perplexity that much.
TEST(JobDeviceTest, JobWithStreamedBlocksOnCudaMatchesTheResidentOne_CUDA) {
  if (!torch::cuda::is_available()) GTEST_SKIP() << "no CUDA device";
  MetricSink resident_sink, streamed_sink;
  CancellationToken cancel;
  RunJobOptions gpu;
  gpu.device = "cuda";
  v1::JobSpec streamed_spec = SmallJob();
  streamed_spec.mutable_resources()->set_max_memory("600KiB");
  // The export is checked by reloading it next to the streamed model (streamed too).
  const std::string export_dir =
      std::string(QUANTD_BINARY_DIR) + "/test-scratch/streamed-job-export";
  std::filesystem::remove_all(export_dir);
  streamed_spec.set_output_dir(export_dir);
  const RunJobOutcome resident = RunJob(SmallJob(), gpu, resident_sink, cancel);
  const RunJobOutcome streamed = RunJob(streamed_spec, gpu, streamed_sink, cancel);
  ASSERT_TRUE(resident.status.ok()) << resident.status;
  ASSERT_TRUE(streamed.status.ok()) << streamed.status;
  EXPECT_EQ(streamed_sink.metrics["device/streamed_blocks"], 4);
  EXPECT_GT(streamed_sink.metrics["export/bytes"], 0);
  EXPECT_GE(ComparePerplexities(resident_sink, streamed_sink, 1e-3), 6);
  std::filesystem::remove_all(export_dir);
}

// A training job (trainable prefix, one fine-tuning epoch) under a max_memory that streams 4
// of 5 blocks of each of its two copies: prefix training back-propagates block by block, and
// the figures stay within 1 % of the resident job's (the summation order of the gradients
// differs).
TEST(JobDeviceTest, TrainingJobWithStreamedBlocksOnCudaMatchesTheResidentOne_CUDA) {
  if (!torch::cuda::is_available()) GTEST_SKIP() << "no CUDA device";
  v1::JobSpec spec = SmallJob();
  spec.mutable_eval()->clear_compare();
  spec.mutable_prefix()->set_trainable(true);
  spec.mutable_prefix()->set_epochs(2);
  spec.mutable_prefix()->set_lr(1e-2);
  spec.mutable_training()->set_epochs(1);
  spec.mutable_training()->set_batch_size(4);
  v1::JobSpec streamed_spec = spec;
  streamed_spec.mutable_resources()->set_max_memory("1200KiB");
  MetricSink resident_sink, streamed_sink;
  CancellationToken cancel;
  RunJobOptions gpu;
  gpu.device = "cuda";
  const RunJobOutcome resident = RunJob(spec, gpu, resident_sink, cancel);
  const RunJobOutcome streamed = RunJob(streamed_spec, gpu, streamed_sink, cancel);
  ASSERT_TRUE(resident.status.ok()) << resident.status;
  ASSERT_TRUE(streamed.status.ok()) << streamed.status;
  EXPECT_EQ(streamed_sink.metrics["device/streamed_blocks"], 4);
  // fp, quantized_before_finetune, quantized
  EXPECT_GE(ComparePerplexities(resident_sink, streamed_sink, 1e-2), 3);
}

}  // namespace
}  // namespace quantd::pipeline
