#include "server/core/placement.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace quantd {

std::string FormatBytes(int64_t bytes) {
  constexpr double kGiB = 1024.0 * 1024.0 * 1024.0;
  constexpr double kMiB = 1024.0 * 1024.0;
  if (bytes >= static_cast<int64_t>(kGiB)) {
    const double gib = bytes / kGiB;
    return gib == static_cast<int64_t>(gib) ? absl::StrCat(static_cast<int64_t>(gib), " GiB")
                                            : absl::StrFormat("%.1f GiB", gib);
  }
  if (bytes >= static_cast<int64_t>(kMiB)) {
    return absl::StrCat(static_cast<int64_t>(bytes / kMiB), " MiB");
  }
  return absl::StrCat(bytes, " B");
}

PlacementDecision Place(const v1::Resources& resources,
                        const std::vector<WorkerCandidate>& workers) {
  const int need_devices = std::max(1, resources.has_device_count() ? resources.device_count() : 1);
  const int64_t need_memory = resources.min_device_memory_bytes();

  PlacementDecision best;
  size_t best_free = 0;
  bool any_connected = false;
  bool any_big_enough = false;      // enough devices with enough total memory
  bool any_enough_devices = false;  // enough devices at all
  bool any_memory_now = false;      // would fit if its devices were not busy
  for (const WorkerCandidate& worker : workers) {
    if (!worker.connected || worker.draining || worker.excluded) continue;
    any_connected = true;
    if (static_cast<int>(worker.devices.size()) >= need_devices) any_enough_devices = true;
    int big = 0;
    int free_now_ignoring_busy = 0;
    std::vector<std::string> usable;
    for (const v1::Device& device : worker.devices) {
      if (device.total_memory_bytes() >= need_memory || need_memory == 0) ++big;
      if (device.free_memory_bytes() >= need_memory || need_memory == 0) {
        ++free_now_ignoring_busy;
        const bool busy = std::find(worker.busy_device_ids.begin(), worker.busy_device_ids.end(),
                                    device.id()) != worker.busy_device_ids.end();
        if (!busy) usable.push_back(device.id());
      }
    }
    if (big >= need_devices) any_big_enough = true;
    if (free_now_ignoring_busy >= need_devices) any_memory_now = true;
    if (worker.running_jobs >= worker.max_jobs) continue;
    if (static_cast<int>(usable.size()) < need_devices) continue;
    if (!best.placed || usable.size() > best_free ||
        (usable.size() == best_free && worker.worker_id < best.worker_id)) {
      best.placed = true;
      best.worker_id = worker.worker_id;
      best.device_ids.assign(usable.begin(), usable.begin() + need_devices);
      best_free = usable.size();
    }
  }
  if (best.placed) return best;

  if (!any_connected) {
    best.pending_reason = "no worker connected";
  } else if (!any_enough_devices) {
    best.pending_reason = absl::StrCat("no worker with ", need_devices, " devices");
  } else if (!any_big_enough) {
    best.pending_reason =
        absl::StrCat("no worker with ", need_devices == 1 ? "a device" : "devices",
                     " of >= ", FormatBytes(need_memory));
  } else if (!any_memory_now) {
    best.pending_reason = absl::StrCat("no worker with >= ", FormatBytes(need_memory), " free");
  } else {
    best.pending_reason = "all suitable workers busy";
  }
  return best;
}

}  // namespace quantd
