// JobStore: where the scheduler makes its state durable. The SQLite implementation lives in
// server/store/; tests use an in-memory fake.
//
// Contract:
//  - Write() queues a batch and returns at once. Batches commit in the order Write() was
//    called (several may share one transaction: group commit), and each batch's `done` runs
//    after its transaction committed (or failed), in the same order, on the store's own
//    thread. An empty batch is allowed: its `done` runs once every earlier batch committed.
//  - Load() and ReadEvents() may be called from any thread; ReadEvents sees every batch
//    whose `done` has started.
#ifndef QUANTD_SERVER_CORE_JOB_STORE_H_
#define QUANTD_SERVER_CORE_JOB_STORE_H_

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "quantd/v1/job.pb.h"
#include "quantd/v1/worker_service.pb.h"

namespace quantd {

// A job as stored: the public view (spec included) and the scheduler's bookkeeping.
struct StoredJob {
  v1::Job job;
  // Position in submission order (FIFO among equal priorities, newest-first listing).
  int64_t submit_order = 0;
  // Highest worker-side event counter stored for the current attempt.
  int64_t worker_sequence = 0;
  // Devices the job holds on its worker while active.
  std::vector<std::string> device_ids;
  // True only in the batch that creates the job: the spec is written once.
  bool is_new = false;
};

struct IdempotencyKey {
  std::string owner;
  std::string request_id;
  std::string job_id;
};

struct WorkerRecord {
  std::string worker_id;
  v1::Hello hello;
  absl::Time last_seen;
  bool connected = false;
};

struct WriteBatch {
  std::vector<StoredJob> jobs;        // upserted
  std::vector<v1::JobEvent> events;   // inserted; (job_id, sequence) is unique
  std::vector<IdempotencyKey> keys;   // inserted
  std::vector<WorkerRecord> workers;  // upserted
  bool empty() const { return jobs.empty() && events.empty() && keys.empty() && workers.empty(); }
};

struct StoreSnapshot {
  std::vector<StoredJob> jobs;  // in submit_order
  std::vector<IdempotencyKey> keys;
  std::vector<WorkerRecord> workers;
};

class JobStore {
 public:
  using Done = std::function<void(absl::Status)>;
  virtual ~JobStore() = default;

  // Everything stored, for recovery on start.
  virtual absl::StatusOr<StoreSnapshot> Load() = 0;

  virtual void Write(WriteBatch batch, Done done) = 0;

  // Up to `limit` events of `job_id` with sequence > `after_sequence`, in sequence order.
  virtual absl::StatusOr<std::vector<v1::JobEvent>> ReadEvents(const std::string& job_id,
                                                               int64_t after_sequence,
                                                               int limit) = 0;
};

}  // namespace quantd

#endif  // QUANTD_SERVER_CORE_JOB_STORE_H_
