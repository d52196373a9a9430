#include "worker/pipeline/job_device.h"

#include <algorithm>
#include <fstream>
#include <string>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "kernels/device.h"
#include "proto/common/status_macros.h"
#include "proto/spec/validate.h"

namespace quantd::pipeline {

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

int64_t BlockBytes(const model::LlamaConfig& config, torch::ScalarType dtype) {
  const int64_t hidden = config.hidden_size;
  const int64_t kv_width = config.num_key_value_heads * config.head_dim;
  const int64_t q_width = config.num_attention_heads * config.head_dim;
  const int64_t parameters = hidden * q_width * 2 + hidden * kv_width * 2 +
                             hidden * config.intermediate_size * 3 + hidden * 2;
  return parameters * static_cast<int64_t>(c10::elementSize(dtype));
}

int64_t ModelBytes(const model::LlamaConfig& config, torch::ScalarType dtype) {
  const int64_t embeddings =
      config.vocab_size * config.hidden_size * (config.tie_word_embeddings ? 1 : 2) +
      config.hidden_size;
  return embeddings * static_cast<int64_t>(c10::elementSize(dtype)) +
         BlockBytes(config, dtype) * config.num_hidden_layers;
}

int64_t HostAvailableBytes() {
  std::ifstream meminfo("/proc/meminfo");
  std::string key;
  int64_t kib = 0;
  std::string unit;
  while (meminfo >> key >> kib >> unit) {
    if (key == "MemAvailable:") return kib * 1024;
  }
  return 0;
}

int64_t DeviceFreeBytes(const torch::Device& device) {
  if (!device.is_cuda()) return 0;
  long long free_bytes = 0, total_bytes = 0;  // NOLINT(runtime/int): the CUDA runtime's type
  if (!kernels::CudaMemoryInfo(device.has_index() ? device.index() : 0, &free_bytes,
                               &total_bytes)) {
    return 0;
  }
  return static_cast<int64_t>(free_bytes);
}

absl::StatusOr<DevicePlacement> PlanDevicePlacement(const model::LlamaConfig& config,
                                                    torch::ScalarType dtype,
                                                    const torch::Device& device,
                                                    const PlacementLimits& limits) {
  DevicePlacement placement;
  placement.weight_bytes = ModelBytes(config, dtype);
  placement.device_bytes = placement.weight_bytes;
  if (!device.is_cuda()) return placement;
  constexpr double kGiB = 1024.0 * 1024.0 * 1024.0;
  // The binding limit, and how to name it in messages.
  int64_t limit = 0;
  std::string bound;
  if (!limits.max_memory.empty()) {
    ASSIGN_OR_RETURN(limit, ParseMemorySize(limits.max_memory));
    bound = absl::StrFormat("resources.max_memory %s (%.2f GiB)", limits.max_memory, limit / kGiB);
  }
  if (limits.device_free > 0) {
    const auto usable = static_cast<int64_t>(kWeightShareOfFreeDeviceMemory *
                                             static_cast<double>(limits.device_free));
    if (limit == 0 || usable < limit) {
      limit = usable;
      bound = absl::StrFormat("%.0f %% of the %.2f GiB free on the device (%.2f GiB)",
                              100 * kWeightShareOfFreeDeviceMemory, limits.device_free / kGiB,
                              usable / kGiB);
    }
  }
  if (limit == 0) return placement;
  const int copies = std::max(limits.copies, 1);
  const int64_t share = limit / copies;
  if (placement.weight_bytes <= share) return placement;

  const std::string held =
      copies == 1 ? std::string() : absl::StrFormat(" (%d copies of the model at once)", copies);
  const int64_t block = BlockBytes(config, dtype);
  const int layers = config.num_hidden_layers;
  const int64_t fixed = placement.weight_bytes - block * layers;  // embeddings, head, norm
  if (fixed + block > share) {
    return absl::ResourceExhaustedError(absl::StrFormat(
        "out of memory: the model's weights need %.2f GiB in %s%s, more than %s on %s; "
        "streaming blocks from host memory would still need %.2f GiB per copy (embeddings and "
        "head %.2f GiB, one block %.2f GiB)",
        placement.weight_bytes / kGiB, c10::toString(dtype), held, bound, device.str(),
        (fixed + block) / kGiB, fixed / kGiB, block / kGiB));
  }
  const int resident = static_cast<int>(std::min<int64_t>(layers, (share - fixed - block) / block));
  placement.streamed_blocks = layers - resident;
  placement.device_bytes = fixed + block * (resident + 1);
  placement.host_bytes = block * placement.streamed_blocks * copies;
  if (limits.host_available > 0 && placement.host_bytes > limits.host_available) {
    return absl::ResourceExhaustedError(absl::StrFormat(
        "out of memory: the model's weights need %.2f GiB in %s%s, more than %s on %s, and "
        "streaming the other %d of %d blocks would need %.2f GiB of pinned host memory, more "
        "than the %.2f GiB available",
        placement.weight_bytes / kGiB, c10::toString(dtype), held, bound, device.str(),
        placement.streamed_blocks, layers, placement.host_bytes / kGiB,
        limits.host_available / kGiB));
  }
  placement.summary = absl::StrFormat(
      "weights %.2f GiB in %s%s exceed %s: %d of %d blocks stay in host memory and are streamed "
      "to %s (%.2f GiB of weights on the device per copy)",
      placement.weight_bytes / kGiB, c10::toString(dtype), held, bound, placement.streamed_blocks,
      layers, device.str(), placement.device_bytes / kGiB);
  return placement;
}

}  // namespace quantd::pipeline
