// What devices this worker offers the scheduler.
//
// GPUs are found with `nvidia-smi` (present wherever the NVIDIA driver is), so discovery
// needs neither a CUDA build nor a GPU at build time. Without GPUs the worker offers the
// CPU, with the host's total and available memory.
#ifndef QUANTD_WORKER_LINK_DEVICES_H_
#define QUANTD_WORKER_LINK_DEVICES_H_

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "quantd/v1/worker_service.pb.h"

namespace quantd::link {

// Parses nvidia-smi's "--query-gpu=index,name,memory.total,memory.free,compute_cap
// --format=csv,noheader,nounits" output (MiB). INVALID_ARGUMENT on a malformed line.
absl::StatusOr<std::vector<v1::Device>> ParseNvidiaSmi(const std::string& csv);

// The CPU as a device: id "cpu", /proc/cpuinfo's model name, MemTotal and MemAvailable.
v1::Device CpuDevice();

// GPUs when nvidia-smi finds any, else the CPU. `pinned` ("0,2") keeps only those GPU
// indices; pinned GPUs that do not exist are NOT_FOUND.
absl::StatusOr<std::vector<v1::Device>> DiscoverDevices(const std::string& pinned);

}  // namespace quantd::link

#endif  // QUANTD_WORKER_LINK_DEVICES_H_
