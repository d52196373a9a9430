#include "server/core/scheduler.h"

#include <algorithm>
#include <memory>
#include <utility>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "proto/common/status_macros.h"
#include "server/core/failure.h"
#include "server/core/job_state.h"
#include "server/core/limits.h"
#include "server/core/time_util.h"
#include "spdlog/spdlog.h"

namespace quantd {

Scheduler::Scheduler(SchedulerOptions options, Clock* clock, JobStore* store, EventSink* sink,
                     SchedulerObserver* observer)
    : options_(std::move(options)),
      clock_(clock),
      store_(store),
      sink_(sink),
      observer_(observer) {}

std::string Scheduler::IdempotencyMapKey(const std::string& owner, const std::string& request_id) {
  return absl::StrCat(owner, std::string(1, '\0'), request_id);
}

Scheduler::QueueKey Scheduler::KeyOf(const JobEntry& entry) {
  return QueueKey(-entry.stored.job.spec().priority(), entry.stored.submit_order,
                  entry.stored.job.job_id());
}

absl::Status Scheduler::Recover() {
  ASSIGN_OR_RETURN(StoreSnapshot snapshot, store_->Load());
  absl::MutexLock lock(&mu_);
  const absl::Time now = clock_->Now();
  for (StoredJob& stored : snapshot.jobs) {
    const std::string id = stored.job.job_id();
    JobEntry& entry = jobs_[id];
    entry.stored = std::move(stored);
    entry.stored.is_new = false;
    v1::Job& job = entry.stored.job;
    entry.queued_since = now;
    by_order_[entry.stored.submit_order] = id;
    next_submit_order_ = std::max(next_submit_order_, entry.stored.submit_order + 1);
    int64_t number = 0;
    if (id.rfind("j-", 0) == 0 && absl::SimpleAtoi(id.substr(2), &number)) {
      next_job_number_ = std::max(next_job_number_, number + 1);
    }
    ++state_counts_[job.state()];
    if (job.state() == v1::JOB_STATE_QUEUED) queue_.insert(KeyOf(entry));
    if (IsActive(job.state())) {
      ++active_by_owner_[job.owner()];
      WorkerEntry& worker = workers_[job.worker_id()];
      worker.hello.set_worker_id(job.worker_id());
      worker.last_seen = now;
      worker.lost_at = now + options_.reattach_grace;
      worker.jobs.insert(id);
    }
    if (!job.request_id().empty()) {
      idempotency_[IdempotencyMapKey(job.owner(), job.request_id())] = id;
    }
  }
  for (const IdempotencyKey& key : snapshot.keys) {
    idempotency_[IdempotencyMapKey(key.owner, key.request_id)] = key.job_id;
  }
  global_pending_reason_ = "no worker connected";
  return absl::OkStatus();
}

// ---------------------------------------------------------------- helpers

Scheduler::JobEntry* Scheduler::Find(const std::string& job_id) {
  auto it = jobs_.find(job_id);
  return it == jobs_.end() ? nullptr : &it->second;
}

absl::StatusOr<Scheduler::JobEntry*> Scheduler::FindVisible(const Caller& caller,
                                                            const std::string& job_id) {
  if (job_id.empty()) return absl::InvalidArgumentError("job_id: required");
  if (job_id.size() > kMaxJobIdLength) {
    return absl::InvalidArgumentError(
        absl::StrCat("job_id: ", job_id.size(), " bytes, the limit is ", kMaxJobIdLength));
  }
  JobEntry* entry = Find(job_id);
  if (entry == nullptr) return absl::NotFoundError(absl::StrCat("job ", job_id, " not found"));
  if (!caller.admin && entry->stored.job.owner() != caller.name) {
    return absl::PermissionDeniedError(absl::StrCat("job ", job_id, " belongs to another owner"));
  }
  return entry;
}

absl::StatusOr<Scheduler::WorkerEntry*> Scheduler::FindWorker(const std::string& worker_id,
                                                              WorkerLink* link) {
  auto it = workers_.find(worker_id);
  if (it == workers_.end() || it->second.link != link || link == nullptr) {
    return absl::FailedPreconditionError(
        absl::StrCat("worker ", worker_id, " is not connected on this stream"));
  }
  return &it->second;
}

v1::Job Scheduler::View(const JobEntry& entry) const {
  v1::Job job = entry.stored.job;
  job.clear_queue_position();
  job.clear_pending_reason();
  if (job.state() == v1::JOB_STATE_QUEUED) {
    const QueueKey key = KeyOf(entry);
    int32_t position = 0;
    for (auto it = queue_.begin(); it != queue_.end() && *it < key; ++it) ++position;
    job.set_queue_position(position);
    job.set_pending_reason(entry.reason_pass == dispatch_pass_ && !entry.pending_reason.empty()
                               ? entry.pending_reason
                               : global_pending_reason_);
  }
  return job;
}

bool Scheduler::IsStale(const JobEntry& entry, const std::string& worker_id, bool has_attempt,
                        int32_t attempt) const {
  if (!has_attempt) return false;
  const v1::Job& job = entry.stored.job;
  if (attempt != job.attempt() || job.worker_id() != worker_id || !IsActive(job.state())) {
    return true;
  }
  auto worker = workers_.find(worker_id);
  return worker == workers_.end() || worker->second.jobs.count(job.job_id()) == 0;
}

void Scheduler::ReportStale(WorkerMessageKind kind, const JobEntry& entry,
                            const std::string& worker_id, int32_t attempt) const {
  const v1::Job& job = entry.stored.job;
  const char* what = kind == WorkerMessageKind::kEvents     ? "JobEvents"
                     : kind == WorkerMessageKind::kFinished ? "JobFinished"
                     : kind == WorkerMessageKind::kRejected ? "AssignmentRejected"
                                                            : "Hello running job";
  const std::string job_worker = job.worker_id().empty() ? "-" : job.worker_id();
  // A running job named in a Hello is not dropped but stopped on that worker.
  const char* outcome = kind == WorkerMessageKind::kHello ? "; told the worker to stop it" : "";
  if (attempt != job.attempt()) {
    spdlog::warn(
        "job {}: dropped a stale {} from worker {}: attempt {}, the current attempt is {} ({} on "
        "worker {}){}",
        job.job_id(), what, worker_id, attempt, job.attempt(), StateName(job.state()), job_worker,
        outcome);
  } else if (!IsActive(job.state())) {
    spdlog::warn("job {}: dropped a {} from worker {}: attempt {} already ended ({}){}",
                 job.job_id(), what, worker_id, attempt, StateName(job.state()), outcome);
  } else if (job.worker_id() != worker_id) {
    spdlog::warn("job {}: dropped a {} from worker {}: attempt {} is {} on worker {}, not on {}{}",
                 job.job_id(), what, worker_id, attempt, StateName(job.state()), job_worker,
                 worker_id, outcome);
  } else {
    spdlog::warn(
        "job {}: dropped a {} from worker {}: attempt {} ({}) is not among that worker's jobs{}",
        job.job_id(), what, worker_id, attempt, StateName(job.state()), outcome);
  }
  if (observer_ != nullptr) observer_->OnStaleWorkerMessage(kind);
}

void Scheduler::AppendEvent(JobEntry& entry, v1::JobEvent event) {
  v1::Job& job = entry.stored.job;
  event.set_job_id(job.job_id());
  event.set_sequence(job.last_sequence() + 1);
  if (!event.has_time()) ToProtoTime(clock_->Now(), event.mutable_time());
  job.set_last_sequence(event.sequence());
  pending_events_.push_back(std::move(event));
  dirty_jobs_.insert(job.job_id());
}

absl::Status Scheduler::Transition(JobEntry& entry, v1::JobState to, const v1::Failure* failure) {
  v1::Job& job = entry.stored.job;
  const v1::JobState from = job.state();
  RETURN_IF_ERROR(CheckTransition(from, to));
  const absl::Time now = clock_->Now();

  if (from == v1::JOB_STATE_QUEUED) queue_.erase(KeyOf(entry));
  if (IsActive(from) && !IsActive(to)) {
    auto worker = workers_.find(job.worker_id());
    if (worker != workers_.end()) worker->second.jobs.erase(job.job_id());
    entry.stored.device_ids.clear();
    if (--active_by_owner_[job.owner()] <= 0) active_by_owner_.erase(job.owner());
  }
  if (!IsActive(from) && IsActive(to)) ++active_by_owner_[job.owner()];
  if (to == v1::JOB_STATE_QUEUED) {
    entry.queued_since = now;
    entry.pending_reason.clear();
    entry.stored.worker_sequence = 0;
    // A requeued job reads as a queued one: nothing of the attempt that lost its worker.
    job.set_phase(v1::PHASE_UNSPECIFIED);
    job.clear_progress();
    job.mutable_progress()->set_eta_seconds(-1);
    job.clear_result();
    queue_.insert(KeyOf(entry));
  }
  if (to == v1::JOB_STATE_RUNNING && !job.has_start_time()) {
    ToProtoTime(now, job.mutable_start_time());
  }
  if (IsTerminal(to)) {
    ToProtoTime(now, job.mutable_end_time());
    if (observer_ != nullptr) {
      const absl::Duration run =
          job.has_start_time() ? now - FromProtoTime(job.start_time()) : absl::ZeroDuration();
      observer_->OnFinished(to, run);
    }
  }
  if (failure != nullptr && (to == v1::JOB_STATE_FAILED || to == v1::JOB_STATE_CANCELLED)) {
    *job.mutable_failure() = *failure;
  }
  if (state_counts_[from] > 0) --state_counts_[from];
  ++state_counts_[to];
  job.set_state(to);

  v1::JobEvent event;
  v1::StateChange* change = event.mutable_state_change();
  change->set_from(from);
  change->set_to(to);
  change->set_worker_id(job.worker_id());
  if (failure != nullptr) *change->mutable_failure() = *failure;
  AppendEvent(entry, std::move(event));
  // The requeue's state_change names the worker it left; the job no longer has one.
  if (to == v1::JOB_STATE_QUEUED) job.clear_worker_id();
  return absl::OkStatus();
}

void Scheduler::LoseJob(JobEntry& entry, const std::string& why, bool stopped_by_worker) {
  v1::Job& job = entry.stored.job;
  absl::Status status;
  if (job.state() == v1::JOB_STATE_CANCELLING) {
    const v1::Failure failure = MakeFailure(
        v1::FAILURE_REASON_CANCELLED,
        absl::StrCat(entry.cancel_message.empty() ? "cancelled" : entry.cancel_message, "; ", why));
    status = Transition(entry, v1::JOB_STATE_CANCELLED, &failure);
  } else if (job.attempt() >= options_.max_requeues) {
    const v1::Failure failure =
        MakeFailure(v1::FAILURE_REASON_WORKER_LOST,
                    absl::StrCat(why, "; gave up after ", job.attempt() + 1, " attempts"));
    status = Transition(entry, v1::JOB_STATE_FAILED, &failure);
  } else {
    const v1::Failure failure = MakeFailure(v1::FAILURE_REASON_WORKER_LOST, why);
    status = Transition(entry, v1::JOB_STATE_QUEUED, &failure);
    if (status.ok()) {
      job.set_attempt(job.attempt() + 1);
      if (observer_ != nullptr) observer_->OnRequeued(stopped_by_worker);
    }
  }
  (void)status;  // Only active jobs are lost; every active state has these edges.
}

void Scheduler::LoseWorker(const std::string& worker_id, const std::string& why) {
  auto it = workers_.find(worker_id);
  if (it == workers_.end()) return;
  if (it->second.link != nullptr) {
    it->second.link->Close(absl::DeadlineExceededError(why));
    it->second.link = nullptr;
  }
  const std::set<std::string> job_ids = it->second.jobs;
  for (const std::string& job_id : job_ids) {
    JobEntry* entry = Find(job_id);
    if (entry != nullptr) LoseJob(*entry, absl::StrCat("worker ", worker_id, " lost: ", why));
  }
  WorkerRecord record;
  record.worker_id = worker_id;
  record.hello = it->second.hello;
  record.last_seen = it->second.last_seen;
  record.connected = false;
  pending_workers_.push_back(std::move(record));
  workers_.erase(it);
}

void Scheduler::RecordWorker(const std::string& worker_id) {
  auto it = workers_.find(worker_id);
  if (it == workers_.end()) return;
  WorkerRecord record;
  record.worker_id = worker_id;
  record.hello = it->second.hello;
  *record.hello.mutable_devices() = {it->second.devices.begin(), it->second.devices.end()};
  record.last_seen = it->second.last_seen;
  record.connected = it->second.link != nullptr;
  pending_workers_.push_back(std::move(record));
}

std::vector<WorkerCandidate> Scheduler::Candidates(const JobEntry& entry) const {
  std::vector<WorkerCandidate> out;
  out.reserve(workers_.size());
  for (const auto& [id, worker] : workers_) {
    WorkerCandidate candidate;
    candidate.worker_id = id;
    candidate.connected = worker.link != nullptr;
    candidate.draining = worker.draining;
    candidate.excluded = entry.rejected_by.count(id) > 0;
    candidate.running_jobs = static_cast<int>(worker.jobs.size());
    candidate.max_jobs = worker.max_jobs;
    candidate.devices = worker.devices;
    for (const std::string& job_id : worker.jobs) {
      auto job = jobs_.find(job_id);
      if (job == jobs_.end()) continue;
      candidate.busy_device_ids.insert(candidate.busy_device_ids.end(),
                                       job->second.stored.device_ids.begin(),
                                       job->second.stored.device_ids.end());
    }
    out.push_back(std::move(candidate));
  }
  return out;
}

bool Scheduler::AnyCapacity() const {
  for (const auto& [id, worker] : workers_) {
    if (worker.link == nullptr || worker.draining) continue;
    if (static_cast<int>(worker.jobs.size()) >= worker.max_jobs) continue;
    size_t busy = 0;
    for (const std::string& job_id : worker.jobs) {
      auto job = jobs_.find(job_id);
      if (job != jobs_.end()) busy += job->second.stored.device_ids.size();
    }
    if (busy < worker.devices.size()) return true;
  }
  return false;
}

void Scheduler::Dispatch() {
  ++dispatch_pass_;
  bool any_connected = false;
  for (const auto& [id, worker] : workers_) any_connected |= worker.link != nullptr;
  global_pending_reason_ = any_connected ? "all workers busy" : "no worker connected";
  if (!any_connected) return;
  auto it = queue_.begin();
  while (it != queue_.end()) {
    // Without capacity the rest waits for the scheduler-wide reason.
    if (!AnyCapacity()) break;
    JobEntry& entry = jobs_.at(std::get<2>(*it));
    ++it;  // Transition() erases the current key.
    v1::Job& job = entry.stored.job;
    if (options_.max_running_per_owner > 0) {
      auto active = active_by_owner_.find(job.owner());
      const int running = active == active_by_owner_.end() ? 0 : active->second;
      if (running >= options_.max_running_per_owner) {
        entry.pending_reason = absl::StrCat("owner at limit (", running, " running)");
        entry.reason_pass = dispatch_pass_;
        continue;
      }
    }
    PlacementDecision decision = Place(job.spec().resources(), Candidates(entry));
    if (!decision.placed) {
      entry.pending_reason = decision.pending_reason;
      entry.reason_pass = dispatch_pass_;
      continue;
    }
    const absl::Duration waited = clock_->Now() - entry.queued_since;
    WorkerEntry& worker = workers_.at(decision.worker_id);
    job.set_worker_id(decision.worker_id);
    entry.stored.device_ids = decision.device_ids;
    job.clear_failure();
    if (!Transition(entry, v1::JOB_STATE_ASSIGNED, nullptr).ok()) continue;
    worker.jobs.insert(job.job_id());
    if (observer_ != nullptr) observer_->OnAssigned(waited);
    v1::SchedulerMessage message;
    v1::Assignment* assignment = message.mutable_assignment();
    *assignment->mutable_job() = View(entry);
    for (const std::string& device : decision.device_ids) assignment->add_device_ids(device);
    worker.link->Send(message);
  }
}

void Scheduler::Commit(std::function<void(absl::Status)> done) {
  WriteBatch batch;
  for (const std::string& job_id : dirty_jobs_) {
    JobEntry* entry = Find(job_id);
    if (entry == nullptr) continue;
    StoredJob stored = entry->stored;
    stored.is_new = new_jobs_.count(job_id) > 0;
    batch.jobs.push_back(std::move(stored));
  }
  dirty_jobs_.clear();
  new_jobs_.clear();
  batch.events = std::move(pending_events_);
  pending_events_.clear();
  batch.keys = std::move(pending_keys_);
  pending_keys_.clear();
  batch.workers = std::move(pending_workers_);
  pending_workers_.clear();

  std::vector<EventPtr> published;
  published.reserve(batch.events.size());
  for (const v1::JobEvent& event : batch.events) {
    published.push_back(std::make_shared<const v1::JobEvent>(event));
  }
  EventSink* sink = sink_;
  auto on_store_failure = options_.on_store_failure;
  store_->Write(std::move(batch), [sink, on_store_failure, published = std::move(published),
                                   done = std::move(done)](absl::Status status) {
    if (status.ok()) {
      if (!published.empty()) sink->Publish(published);
    } else if (on_store_failure) {
      on_store_failure(status);
    }
    if (done) done(status);
  });
}

SchedulerStats Scheduler::Stats() const {
  absl::MutexLock lock(&mu_);
  SchedulerStats stats;
  for (const auto& [state, count] : state_counts_) {
    if (state != v1::JOB_STATE_UNSPECIFIED) stats.jobs_by_state[state] = count;
  }
  for (const auto& [id, worker] : workers_) {
    if (worker.link == nullptr) continue;
    ++stats.workers_connected;
    stats.devices_total += static_cast<int64_t>(worker.devices.size());
    for (const std::string& job_id : worker.jobs) {
      auto job = jobs_.find(job_id);
      if (job != jobs_.end()) stats.devices_busy += job->second.stored.device_ids.size();
    }
  }
  return stats;
}

}  // namespace quantd
