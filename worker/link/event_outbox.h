// Job events waiting for the scheduler's acknowledgement, per job, in order.
//
// Each event gets a worker sequence (1, 2, ... per job and attempt). Events stay until the
// scheduler acknowledges them (EventsAck), so a broken stream loses nothing: after
// reconnecting the worker resends everything after the last acknowledged sequence, and the
// scheduler drops what it already stored. At most `max_in_memory` events are held in memory
// across all jobs; beyond that a job's further events go to a spill file in `spill_dir` and
// are read back when sent.
//
// Thread-safe.
#ifndef QUANTD_WORKER_LINK_EVENT_OUTBOX_H_
#define QUANTD_WORKER_LINK_EVENT_OUTBOX_H_

#include <cstdint>
#include <deque>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "quantd/v1/job.pb.h"

namespace quantd::link {

class EventOutbox {
 public:
  EventOutbox(size_t max_in_memory, std::string spill_dir);

  // The events of `job_id` added from now on belong to `attempt` (the Job.attempt of its
  // assignment). When the queue held another attempt's events, they are dropped (the
  // scheduler has given up on that attempt) and the sequences start again at 1.
  void StartAttempt(const std::string& job_id, int32_t attempt);
  // The attempt given to StartAttempt; nullopt when none was (or the job was forgotten).
  std::optional<int32_t> attempt(const std::string& job_id) const;

  // Queues `event` for `job_id`; returns its worker sequence. An event without `time` is
  // stamped now (the job process stamps its own when it emits them), so that events held
  // while the scheduler is unreachable keep the time they happened.
  int64_t Add(const std::string& job_id, const v1::JobEvent& event);

  // The scheduler stored every event of `job_id` up to `worker_sequence`.
  void Ack(const std::string& job_id, int64_t worker_sequence);

  // Up to `max` queued events with worker sequence > `after`, in order, with their
  // sequences.
  std::vector<std::pair<int64_t, v1::JobEvent>> Pending(const std::string& job_id, int64_t after,
                                                        size_t max);

  int64_t acked(const std::string& job_id) const;
  int64_t last(const std::string& job_id) const;
  std::vector<std::string> jobs() const;

  // Drops everything about `job_id` (after its finish is known to the scheduler).
  void Forget(const std::string& job_id);

  size_t in_memory() const;

 private:
  struct JobQueue {
    int64_t acked = 0;
    int64_t last = 0;
    // Events acked+1 .. acked+memory.size() are in memory; the rest, up to `last`, are in
    // the spill file (whose first event is `spill_first`).
    std::deque<v1::JobEvent> memory;
    int64_t spill_first = 0;
    int64_t spilled = 0;
    std::optional<int32_t> attempt;
  };

  std::string SpillPath(const std::string& job_id) const;
  void ForgetLocked(const std::string& job_id) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Moves spilled events back into memory once the in-memory part is drained.
  void RefillLocked(const std::string& job_id, JobQueue& queue) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  std::vector<v1::JobEvent> ReadSpillLocked(const std::string& job_id) const
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const size_t max_in_memory_;
  const std::string spill_dir_;
  mutable std::mutex mu_;
  std::map<std::string, JobQueue> queues_ ABSL_GUARDED_BY(mu_);
  size_t in_memory_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace quantd::link

#endif  // QUANTD_WORKER_LINK_EVENT_OUTBOX_H_
