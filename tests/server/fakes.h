// Test doubles for the scheduler core: a hand-driven clock, an in-memory JobStore and a
// WorkerLink that records what the scheduler sent.
#ifndef QUANTD_TESTS_SERVER_FAKES_H_
#define QUANTD_TESTS_SERVER_FAKES_H_

#include <map>
#include <string>
#include <utility>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "server/core/clock.h"
#include "server/core/job_store.h"
#include "server/core/worker_link.h"

namespace quantd::testing {

class FakeClock : public Clock {
 public:
  absl::Time Now() const override {
    absl::MutexLock lock(&mu_);
    return now_;
  }
  void Advance(absl::Duration d) {
    absl::MutexLock lock(&mu_);
    now_ += d;
  }

 private:
  mutable absl::Mutex mu_;
  absl::Time now_ = absl::FromUnixSeconds(1700000000);
};

// Commits inline (callbacks run inside Write) unless held, in which case batches wait
// until Release().
class MemoryStore : public JobStore {
 public:
  absl::StatusOr<StoreSnapshot> Load() override {
    absl::MutexLock lock(&mu_);
    StoreSnapshot snapshot;
    std::map<int64_t, StoredJob> ordered;
    for (const auto& [id, job] : jobs_) ordered[job.submit_order] = job;
    for (auto& [order, job] : ordered) snapshot.jobs.push_back(job);
    snapshot.keys = keys_;
    return snapshot;
  }
  void Write(WriteBatch batch, Done done) override {
    {
      absl::MutexLock lock(&mu_);
      if (hold_) {
        held_.emplace_back(std::move(batch), std::move(done));
        return;
      }
      Apply(batch);
      ++batches_;
    }
    done(absl::OkStatus());
  }
  absl::StatusOr<std::vector<v1::JobEvent>> ReadEvents(const std::string& job_id, int64_t after,
                                                       int limit) override {
    absl::MutexLock lock(&mu_);
    std::vector<v1::JobEvent> out;
    auto& events = events_[job_id];
    for (auto it = events.upper_bound(after); it != events.end(); ++it) {
      if (static_cast<int>(out.size()) >= limit) break;
      out.push_back(it->second);
    }
    return out;
  }
  void Hold() {
    absl::MutexLock lock(&mu_);
    hold_ = true;
  }
  void Release() {
    std::vector<std::pair<WriteBatch, Done>> held;
    {
      absl::MutexLock lock(&mu_);
      hold_ = false;
      held.swap(held_);
      for (auto& [batch, done] : held) Apply(batch);
    }
    for (auto& [batch, done] : held) done(absl::OkStatus());
  }
  std::vector<v1::JobEvent> AllEvents(const std::string& job_id) {
    return *ReadEvents(job_id, 0, 1 << 30);
  }
  int batches() {
    absl::MutexLock lock(&mu_);
    return batches_;
  }

 private:
  void Apply(const WriteBatch& batch) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    for (const StoredJob& job : batch.jobs) jobs_[job.job.job_id()] = job;
    for (const v1::JobEvent& event : batch.events) {
      events_[event.job_id()][event.sequence()] = event;
    }
    for (const IdempotencyKey& key : batch.keys) keys_.push_back(key);
  }

  absl::Mutex mu_;
  bool hold_ ABSL_GUARDED_BY(mu_) = false;
  int batches_ ABSL_GUARDED_BY(mu_) = 0;
  std::vector<std::pair<WriteBatch, Done>> held_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, StoredJob> jobs_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, std::map<int64_t, v1::JobEvent>> events_ ABSL_GUARDED_BY(mu_);
  std::vector<IdempotencyKey> keys_ ABSL_GUARDED_BY(mu_);
};

class RecordingLink : public WorkerLink {
 public:
  void Send(const v1::SchedulerMessage& message) override { sent.push_back(message); }
  void Close(const absl::Status& status) override { closed = status; }
  std::string peer() const override { return peer_address; }

  std::vector<v1::Assignment> Assignments() const {
    std::vector<v1::Assignment> out;
    for (const auto& m : sent) {
      if (m.has_assignment()) out.push_back(m.assignment());
    }
    return out;
  }
  std::vector<v1::Cancellation> Cancellations() const {
    std::vector<v1::Cancellation> out;
    for (const auto& m : sent) {
      if (m.has_cancellation()) out.push_back(m.cancellation());
    }
    return out;
  }

  std::vector<v1::SchedulerMessage> sent;
  absl::Status closed = absl::OkStatus();
  std::string peer_address;
};

}  // namespace quantd::testing

#endif  // QUANTD_TESTS_SERVER_FAKES_H_
