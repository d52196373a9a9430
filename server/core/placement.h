// Placement: which worker and devices a queued job gets, or why it has to wait.
//
// Pure function of its inputs; no locking, no side effects.
#ifndef QUANTD_SERVER_CORE_PLACEMENT_H_
#define QUANTD_SERVER_CORE_PLACEMENT_H_

#include <cstdint>
#include <string>
#include <vector>

#include "quantd/v1/job.pb.h"
#include "quantd/v1/worker_service.pb.h"

namespace quantd {

// A worker as placement sees it.
struct WorkerCandidate {
  std::string worker_id;
  bool connected = false;
  bool draining = false;
  // The job was rejected by this worker before.
  bool excluded = false;
  int running_jobs = 0;
  int max_jobs = 1;
  // Every device of the worker, and which of them jobs hold.
  std::vector<v1::Device> devices;
  std::vector<std::string> busy_device_ids;
};

struct PlacementDecision {
  bool placed = false;
  std::string worker_id;
  std::vector<std::string> device_ids;
  // Why the job waits when not placed, e.g. "no worker with >= 40 GiB free".
  std::string pending_reason;
};

// Picks a worker that is connected, not draining, below max_jobs and has
// resources.device_count() (>= 1) free devices each with at least
// resources.min_device_memory_bytes() free. Among several, the one with the most free
// devices wins (spreading load), ties broken by worker id.
PlacementDecision Place(const v1::Resources& resources,
                        const std::vector<WorkerCandidate>& workers);

// "40 GiB", "512 MiB", "1.5 GiB".
std::string FormatBytes(int64_t bytes);

}  // namespace quantd

#endif  // QUANTD_SERVER_CORE_PLACEMENT_H_
