// Where a job computes, and how device trouble becomes a job failure.
//
// A worker gives each job process only its assigned GPUs (CUDA_VISIBLE_DEVICES, set by
// `quantd-worker exec-job` from the assignment before LibTorch touches CUDA), so inside the
// job the first visible device is the job's own.
#ifndef QUANTD_WORKER_PIPELINE_JOB_DEVICE_H_
#define QUANTD_WORKER_PIPELINE_JOB_DEVICE_H_

#include <torch/torch.h>

#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "worker/model/config.h"

namespace quantd::pipeline {

// The value of CUDA_VISIBLE_DEVICES for an assignment's device ids (worker/link/devices.h ids:
// {"cuda:0", "cuda:2"} -> "0,2"; {"cpu"} -> "", which hides every GPU); nullopt when the
// assignment names no device (the job then sees what the worker sees).
std::optional<std::string> VisibleDevicesFor(const std::vector<std::string>& device_ids);

// True when `status` reports an allocation failure of LibTorch (CUDA or host): such a job
// fails with reason OOM, its message (which carries LibTorch's memory figures) kept.
bool IsOutOfMemory(const absl::Status& status);

// Bytes the weights of a model of `config` take in `dtype` (embeddings, blocks, norms, lm_head).
int64_t ModelBytes(const model::LlamaConfig& config, torch::ScalarType dtype);
// The part of it one decoder block takes.
int64_t BlockBytes(const model::LlamaConfig& config, torch::ScalarType dtype);

// Where a model's weights live on a device with a memory limit.
struct DevicePlacement {
  int streamed_blocks = 0;   // the last blocks, kept in host memory (model/block_streaming.h)
  int64_t weight_bytes = 0;  // every weight in the compute dtype
  // On the device, per copy: the weights of the resident part, plus one streamed block while
  // it runs.
  int64_t device_bytes = 0;
  int64_t host_bytes = 0;  // pinned host memory the streamed blocks take, all copies
  std::string summary;     // one line for the job log ("" when nothing streams)
};

// MemAvailable of /proc/meminfo in bytes; 0 when it cannot be read.
int64_t HostAvailableBytes();

// Share of a CUDA device's free memory that weights may take; the rest is left for
// activations, KV caches and LibTorch's workspaces.
inline constexpr double kWeightShareOfFreeDeviceMemory = 0.75;

// What bounds a job's placement.
struct PlacementLimits {
  std::string max_memory;      // resources.max_memory, e.g. "65GiB" ("": no limit)
  int copies = 1;              // models held at once (a job that trains holds two)
  int64_t device_free = 0;     // bytes free on the device (0: unknown)
  int64_t host_available = 0;  // bytes of host memory available (0: not checked)
};

// Fits the weights on a CUDA device within the smaller of `max_memory` and
// kWeightShareOfFreeDeviceMemory of `device_free`: all of them on the device when they fit;
// otherwise the embeddings, head and as many leading blocks as fit stay there, with room for
// one more block, and the remaining blocks are streamed from host memory one at a time. Each of
// `copies` models is placed the same way in its share of the limit. RESOURCE_EXHAUSTED with
// the figures when even the embeddings, the head and one block of each copy exceed the limit,
// or when the streamed blocks would need more host memory than `host_available`;
// INVALID_ARGUMENT for an unreadable max_memory. Nothing streams on the CPU.
absl::StatusOr<DevicePlacement> PlanDevicePlacement(const model::LlamaConfig& config,
                                                    torch::ScalarType dtype,
                                                    const torch::Device& device,
                                                    const PlacementLimits& limits);

// Free bytes of CUDA device `device` as the CUDA runtime reports them; 0 when unknown (a CPU,
// a build without CUDA, an error).
int64_t DeviceFreeBytes(const torch::Device& device);

}  // namespace quantd::pipeline

#endif  // QUANTD_WORKER_PIPELINE_JOB_DEVICE_H_
