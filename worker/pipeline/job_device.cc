#include "worker/pipeline/job_device.h"

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "proto/spec/validate.h"

namespace quantd::pipeline {

absl::StatusOr<torch::Device> ChooseJobDevice(const std::string& requested) {
  if (requested.empty() || requested == "auto") {
    return torch::cuda::is_available() ? torch::Device(torch::kCUDA, 0)
                                       : torch::Device(torch::kCPU);
  }
  if (requested == "cpu") return torch::Device(torch::kCPU);
  int index = 0;
  if (requested != "cuda" && !(absl::StartsWith(requested, "cuda:") &&
                               absl::SimpleAtoi(requested.substr(5), &index) && index >= 0)) {
    return absl::InvalidArgumentError("device: expected auto, cpu, cuda or cuda:N, got \"" +
                                      requested + "\"");
  }
  if (!torch::cuda::is_available()) {
    return absl::FailedPreconditionError("device " + requested +
                                         ": this LibTorch has no CUDA device to use");
  }
  if (index >= static_cast<int>(torch::cuda::device_count())) {
    return absl::FailedPreconditionError("device " + requested + ": only " +
                                         std::to_string(torch::cuda::device_count()) +
                                         " CUDA device(s) visible");
  }
  return torch::Device(torch::kCUDA, static_cast<c10::DeviceIndex>(index));
}

std::optional<std::string> VisibleDevicesFor(const std::vector<std::string>& device_ids) {
  if (device_ids.empty()) return std::nullopt;
  std::vector<std::string> indices;
  for (const std::string& id : device_ids) {
    if (absl::StartsWith(id, "cuda:")) indices.push_back(id.substr(5));
  }
  return absl::StrJoin(indices, ",");
}

bool IsOutOfMemory(const absl::Status& status) {
  const absl::string_view message = status.message();
  return absl::StrContains(message, "out of memory") || absl::StrContains(message, "OutOfMemory") ||
         absl::StrContains(message, "can't allocate memory") ||
         absl::StrContains(message, "not enough memory");
}

int64_t ModelBytes(const model::LlamaConfig& config, torch::ScalarType dtype) {
  const int64_t hidden = config.hidden_size;
  const int64_t kv_width = config.num_key_value_heads * config.head_dim;
  const int64_t q_width = config.num_attention_heads * config.head_dim;
  const int64_t per_block = hidden * q_width * 2 + hidden * kv_width * 2 +
                            hidden * config.intermediate_size * 3 + hidden * 2;
  const int64_t embeddings =
      config.vocab_size * hidden * (config.tie_word_embeddings ? 1 : 2) + hidden;
  const int64_t parameters = embeddings + per_block * config.num_hidden_layers;
  return parameters * static_cast<int64_t>(c10::elementSize(dtype));
}

absl::Status CheckFitsDevice(const model::LlamaConfig& config, torch::ScalarType dtype,
                             const torch::Device& device, const std::string& max_memory) {
  if (!device.is_cuda() || max_memory.empty()) return absl::OkStatus();
  auto limit = ParseMemorySize(max_memory);
  if (!limit.ok()) return limit.status();
  const int64_t needed = ModelBytes(config, dtype);
  if (needed <= *limit) return absl::OkStatus();
  constexpr double kGiB = 1024.0 * 1024.0 * 1024.0;
  return absl::ResourceExhaustedError(absl::StrFormat(
      "out of memory: the model's weights need %.2f GiB in %s, more than resources.max_memory "
      "%s (%.2f GiB) on %s",
      needed / kGiB, c10::toString(dtype), max_memory, *limit / kGiB, device.str()));
}

}  // namespace quantd::pipeline
