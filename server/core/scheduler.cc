#include "server/core/scheduler.h"

#include <algorithm>
#include <memory>
#include <utility>

#include "absl/strings/escaping.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "google/protobuf/util/message_differencer.h"
#include "proto/common/status_macros.h"
#include "proto/spec/defaults.h"
#include "proto/spec/validate.h"
#include "server/core/job_state.h"
#include "server/core/time_util.h"

namespace quantd {
namespace {

constexpr size_t kMaxRequestIdLength = 128;
constexpr int kDefaultPageSize = 50;
constexpr int kMaxPageSize = 1000;

std::string IdempotencyMapKey(const std::string& owner, const std::string& request_id) {
  return absl::StrCat(owner, std::string(1, '\0'), request_id);
}

std::string EncodePageToken(int64_t before_order) {
  return absl::WebSafeBase64Escape(absl::StrCat("o:", before_order));
}

absl::StatusOr<int64_t> DecodePageToken(const std::string& token) {
  std::string raw;
  int64_t order = 0;
  if (!absl::WebSafeBase64Unescape(token, &raw) || raw.rfind("o:", 0) != 0 ||
      !absl::SimpleAtoi(raw.substr(2), &order) || order <= 0) {
    return absl::InvalidArgumentError("page_token: not a token from a previous ListJobs");
  }
  return order;
}

v1::Failure MakeFailure(v1::FailureReason reason, std::string message) {
  v1::Failure failure;
  failure.set_reason(reason);
  failure.set_message(std::move(message));
  return failure;
}

}  // namespace

Scheduler::Scheduler(SchedulerOptions options, Clock* clock, JobStore* store, EventSink* sink,
                     SchedulerObserver* observer)
    : options_(std::move(options)),
      clock_(clock),
      store_(store),
      sink_(sink),
      observer_(observer) {}

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
  JobEntry* entry = Find(job_id);
  if (entry == nullptr) return absl::NotFoundError(absl::StrCat("job ", job_id, " not found"));
  if (!caller.admin && entry->stored.job.owner() != caller.name) {
    return absl::PermissionDeniedError(
        absl::StrCat("job ", job_id, " belongs to another owner"));
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

void Scheduler::AppendEvent(JobEntry& entry, v1::JobEvent event) {
  v1::Job& job = entry.stored.job;
  event.set_job_id(job.job_id());
  event.set_sequence(job.last_sequence() + 1);
  if (!event.has_time()) ToProtoTime(clock_->Now(), event.mutable_time());
  job.set_last_sequence(event.sequence());
  pending_events_.push_back(std::move(event));
  dirty_jobs_.insert(job.job_id());
}

absl::Status Scheduler::Transition(JobEntry& entry, v1::JobState to,
                                   const v1::Failure* failure) {
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
    queue_.insert(KeyOf(entry));
  }
  if (to == v1::JOB_STATE_RUNNING && !job.has_start_time()) {
    ToProtoTime(now, job.mutable_start_time());
  }
  if (IsTerminal(to)) {
    ToProtoTime(now, job.mutable_end_time());
    if (observer_ != nullptr) {
      const absl::Duration run = job.has_start_time()
                                     ? now - FromProtoTime(job.start_time())
                                     : absl::ZeroDuration();
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
  return absl::OkStatus();
}

void Scheduler::LoseJob(JobEntry& entry, const std::string& why) {
  v1::Job& job = entry.stored.job;
  absl::Status status;
  if (job.state() == v1::JOB_STATE_CANCELLING) {
    const v1::Failure failure =
        MakeFailure(v1::FAILURE_REASON_CANCELLED, absl::StrCat("cancelled; ", why));
    status = Transition(entry, v1::JOB_STATE_CANCELLED, &failure);
  } else if (job.attempt() >= options_.max_requeues) {
    const v1::Failure failure = MakeFailure(
        v1::FAILURE_REASON_WORKER_LOST,
        absl::StrCat(why, "; gave up after ", job.attempt() + 1, " attempts"));
    status = Transition(entry, v1::JOB_STATE_FAILED, &failure);
  } else {
    const v1::Failure failure = MakeFailure(v1::FAILURE_REASON_WORKER_LOST, why);
    status = Transition(entry, v1::JOB_STATE_QUEUED, &failure);
    if (status.ok()) {
      job.set_attempt(job.attempt() + 1);
      if (observer_ != nullptr) observer_->OnRequeued();
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

// ---------------------------------------------------------------- users

void Scheduler::Submit(const Caller& caller, v1::JobSpec spec, const std::string& request_id,
                       Callback<SubmitResult> done) {
  if (request_id.size() > kMaxRequestIdLength) {
    done(absl::InvalidArgumentError(
        absl::StrCat("request_id: at most ", kMaxRequestIdLength, " characters")));
    return;
  }
  ApplyDefaults(&spec);
  if (absl::Status valid = ValidateSpec(spec); !valid.ok()) {
    done(valid);
    return;
  }
  absl::MutexLock lock(&mu_);
  if (!request_id.empty()) {
    auto known = idempotency_.find(IdempotencyMapKey(caller.name, request_id));
    if (known != idempotency_.end()) {
      JobEntry* entry = Find(known->second);
      if (entry == nullptr) {
        done(absl::InternalError("idempotency key points at a missing job"));
        return;
      }
      if (!google::protobuf::util::MessageDifferencer::Equals(entry->stored.job.spec(), spec)) {
        done(absl::AlreadyExistsError(absl::StrCat(
            "request_id: \"", request_id, "\" was used for job ", known->second,
            " with a different spec")));
        return;
      }
      SubmitResult result{View(*entry), true};
      // Answers once the original submission is durable.
      Commit([result, done](absl::Status status) {
        if (!status.ok()) return done(status);
        done(result);
      });
      return;
    }
  }

  const std::string job_id = absl::StrFormat("j-%06d", next_job_number_++);
  JobEntry& entry = jobs_[job_id];
  entry.stored.submit_order = next_submit_order_++;
  entry.queued_since = clock_->Now();
  v1::Job& job = entry.stored.job;
  job.set_job_id(job_id);
  job.set_owner(caller.name);
  *job.mutable_spec() = std::move(spec);
  job.set_request_id(request_id);
  job.set_phase(v1::PHASE_UNSPECIFIED);
  job.mutable_progress()->set_eta_seconds(-1);
  ToProtoTime(clock_->Now(), job.mutable_create_time());
  by_order_[entry.stored.submit_order] = job_id;
  new_jobs_.insert(job_id);
  if (!request_id.empty()) {
    idempotency_[IdempotencyMapKey(caller.name, request_id)] = job_id;
    pending_keys_.push_back({caller.name, request_id, job_id});
  }
  absl::Status status = Transition(entry, v1::JOB_STATE_QUEUED, nullptr);
  if (!status.ok()) {
    done(status);
    return;
  }
  if (observer_ != nullptr) observer_->OnSubmitted();
  Dispatch();
  SubmitResult result{View(entry), false};
  Commit([result, done](absl::Status status) {
    if (!status.ok()) return done(status);
    done(result);
  });
}

absl::StatusOr<v1::Job> Scheduler::GetJob(const Caller& caller,
                                          const std::string& job_id) const {
  absl::MutexLock lock(&mu_);
  ASSIGN_OR_RETURN(JobEntry * entry, const_cast<Scheduler*>(this)->FindVisible(caller, job_id));
  return View(*entry);
}

absl::StatusOr<ListResult> Scheduler::ListJobs(const Caller& caller,
                                               const ListQuery& query) const {
  if (query.page_size < 0) return absl::InvalidArgumentError("page_size: must be >= 0");
  const int page_size =
      query.page_size == 0 ? kDefaultPageSize : std::min(query.page_size, kMaxPageSize);
  std::string owner = query.owner;
  if (!caller.admin) {
    if (!owner.empty() && owner != caller.name) {
      return absl::PermissionDeniedError("owner: only admins list other owners' jobs");
    }
    owner = caller.name;
  }
  int64_t before = INT64_MAX;
  if (!query.page_token.empty()) {
    ASSIGN_OR_RETURN(before, DecodePageToken(query.page_token));
  }
  const std::set<v1::JobState> states(query.states.begin(), query.states.end());

  absl::MutexLock lock(&mu_);
  ListResult result;
  auto it = std::make_reverse_iterator(by_order_.lower_bound(before));
  for (; it != by_order_.rend(); ++it) {
    const JobEntry& entry = jobs_.at(it->second);
    const v1::Job& job = entry.stored.job;
    if (!owner.empty() && job.owner() != owner) continue;
    if (!states.empty() && states.count(job.state()) == 0) continue;
    if (static_cast<int>(result.jobs.size()) == page_size) {
      result.next_page_token = EncodePageToken(entry.stored.submit_order + 1);
      break;
    }
    result.jobs.push_back(View(entry));
  }
  return result;
}

void Scheduler::CancelJob(const Caller& caller, const std::string& job_id,
                          const std::string& reason, Callback<v1::Job> done) {
  absl::MutexLock lock(&mu_);
  absl::StatusOr<JobEntry*> found = FindVisible(caller, job_id);
  if (!found.ok()) {
    done(found.status());
    return;
  }
  JobEntry& entry = **found;
  v1::Job& job = entry.stored.job;
  const std::string why =
      reason.empty() ? absl::StrCat("cancelled by ", caller.name)
                     : absl::StrCat("cancelled by ", caller.name, ": ", reason);
  if (job.state() == v1::JOB_STATE_QUEUED) {
    const v1::Failure failure = MakeFailure(v1::FAILURE_REASON_CANCELLED, why);
    absl::Status status = Transition(entry, v1::JOB_STATE_CANCELLED, &failure);
    if (!status.ok()) return done(status);
    Dispatch();
  } else if (job.state() == v1::JOB_STATE_ASSIGNED || job.state() == v1::JOB_STATE_RUNNING) {
    absl::Status status = Transition(entry, v1::JOB_STATE_CANCELLING, nullptr);
    if (!status.ok()) return done(status);
    v1::JobEvent log;
    log.mutable_log()->set_level("info");
    log.mutable_log()->set_message(why);
    AppendEvent(entry, std::move(log));
    auto worker = workers_.find(job.worker_id());
    if (worker != workers_.end() && worker->second.link != nullptr) {
      v1::SchedulerMessage message;
      message.mutable_cancellation()->set_job_id(job_id);
      message.mutable_cancellation()->set_reason(why);
      worker->second.link->Send(message);
    }
  }
  v1::Job view = View(entry);
  Commit([view, done](absl::Status status) {
    if (!status.ok()) return done(status);
    done(view);
  });
}

absl::StatusOr<v1::JobMetrics> Scheduler::GetJobMetrics(const Caller& caller,
                                                        const std::string& job_id) {
  v1::JobMetrics metrics;
  {
    absl::MutexLock lock(&mu_);
    ASSIGN_OR_RETURN(JobEntry * entry, FindVisible(caller, job_id));
    *metrics.mutable_result() = entry->stored.job.result();
  }
  metrics.set_job_id(job_id);
  int64_t after = 0;
  constexpr int kPage = 1000;
  while (true) {
    ASSIGN_OR_RETURN(std::vector<v1::JobEvent> events,
                     store_->ReadEvents(job_id, after, kPage));
    for (const v1::JobEvent& event : events) {
      if (event.has_loss()) *metrics.add_loss() = event.loss();
      if (event.has_metric()) *metrics.add_metrics() = event.metric();
      after = event.sequence();
    }
    if (static_cast<int>(events.size()) < kPage) break;
  }
  return metrics;
}

// ---------------------------------------------------------------- workers

absl::Status Scheduler::ConnectWorker(const v1::Hello& hello, WorkerLink* link) {
  if (hello.worker_id().empty()) return absl::InvalidArgumentError("hello.worker_id: required");
  if (hello.devices_size() == 0) {
    return absl::InvalidArgumentError("hello.devices: at least one device is required");
  }
  for (const v1::Device& device : hello.devices()) {
    if (device.id().empty()) return absl::InvalidArgumentError("hello.devices.id: required");
  }
  absl::MutexLock lock(&mu_);
  const absl::Time now = clock_->Now();
  WorkerEntry& worker = workers_[hello.worker_id()];
  if (worker.link != nullptr && worker.link != link) {
    worker.link->Close(absl::AbortedError("replaced by a newer connection of the same worker"));
  }
  worker.link = link;
  worker.hello = hello;
  worker.devices.assign(hello.devices().begin(), hello.devices().end());
  worker.max_jobs = hello.max_jobs() > 0 ? hello.max_jobs() : 1;
  worker.draining = false;
  worker.last_seen = now;
  worker.lost_at = now + options_.worker_lost_after;

  v1::SchedulerMessage welcome_message;
  v1::Welcome* welcome = welcome_message.mutable_welcome();
  welcome->set_heartbeat_interval_seconds(static_cast<int32_t>(
      std::max<int64_t>(1, absl::ToInt64Seconds(options_.heartbeat_interval))));
  std::set<std::string> reattached;
  std::vector<std::string> cancel;
  for (const v1::RunningJob& running : hello.running_jobs()) {
    JobEntry* entry = Find(running.job_id());
    if (entry != nullptr && IsActive(entry->stored.job.state()) &&
        entry->stored.job.worker_id() == hello.worker_id() &&
        worker.jobs.count(running.job_id()) > 0) {
      v1::RunningJob* back = welcome->add_reattached();
      back->set_job_id(running.job_id());
      back->set_acked_sequence(entry->stored.worker_sequence);
      reattached.insert(running.job_id());
      if (entry->stored.job.state() == v1::JOB_STATE_CANCELLING) cancel.push_back(running.job_id());
    } else {
      welcome->add_stop_jobs(running.job_id());
    }
  }
  link->Send(welcome_message);
  for (const std::string& job_id : cancel) {
    v1::SchedulerMessage message;
    message.mutable_cancellation()->set_job_id(job_id);
    message.mutable_cancellation()->set_reason("cancel requested while disconnected");
    link->Send(message);
  }
  const std::set<std::string> held = worker.jobs;
  for (const std::string& job_id : held) {
    if (reattached.count(job_id) > 0) continue;
    JobEntry* entry = Find(job_id);
    if (entry != nullptr) {
      LoseJob(*entry, absl::StrCat("worker ", hello.worker_id(),
                                   " reconnected without the job"));
    }
  }
  RecordWorker(hello.worker_id());
  Dispatch();
  Commit(nullptr);
  return absl::OkStatus();
}

void Scheduler::DisconnectWorker(const std::string& worker_id, WorkerLink* link) {
  absl::MutexLock lock(&mu_);
  auto it = workers_.find(worker_id);
  if (it == workers_.end() || it->second.link != link) return;
  it->second.link = nullptr;
  RecordWorker(worker_id);
  if (it->second.jobs.empty()) workers_.erase(it);
  Dispatch();
  Commit(nullptr);
}

absl::Status Scheduler::Heartbeat(const std::string& worker_id, WorkerLink* link,
                                  const v1::Heartbeat& heartbeat) {
  absl::MutexLock lock(&mu_);
  ASSIGN_OR_RETURN(WorkerEntry * worker, FindWorker(worker_id, link));
  const absl::Time now = clock_->Now();
  worker->last_seen = now;
  worker->lost_at = now + options_.worker_lost_after;
  if (heartbeat.devices_size() > 0) {
    worker->devices.assign(heartbeat.devices().begin(), heartbeat.devices().end());
  }
  const bool draining_changed = worker->draining != heartbeat.draining();
  worker->draining = heartbeat.draining();
  if (draining_changed) RecordWorker(worker_id);
  if (!queue_.empty()) Dispatch();
  if (draining_changed || !pending_events_.empty()) Commit(nullptr);
  return absl::OkStatus();
}

void Scheduler::IngestEvents(const std::string& worker_id, WorkerLink* link,
                             const v1::JobEvents& events, Callback<int64_t> done) {
  absl::MutexLock lock(&mu_);
  absl::StatusOr<WorkerEntry*> worker = FindWorker(worker_id, link);
  if (!worker.ok()) return done(worker.status());
  JobEntry* entry = Find(events.job_id());
  if (entry == nullptr || entry->stored.job.worker_id() != worker_id ||
      !IsActive(entry->stored.job.state())) {
    return done(absl::FailedPreconditionError(
        absl::StrCat("job ", events.job_id(), " is not running on worker ", worker_id)));
  }
  (*worker)->last_seen = clock_->Now();
  (*worker)->lost_at = (*worker)->last_seen + options_.worker_lost_after;
  v1::Job& job = entry->stored.job;
  int64_t worker_sequence = events.first_worker_sequence() > 0
                                ? events.first_worker_sequence()
                                : entry->stored.worker_sequence + 1;
  int64_t stored = 0;
  for (const v1::JobEvent& incoming : events.events()) {
    const int64_t this_sequence = worker_sequence++;
    if (this_sequence <= entry->stored.worker_sequence) continue;  // resent after reconnect
    entry->stored.worker_sequence = this_sequence;
    dirty_jobs_.insert(job.job_id());
    if (job.state() == v1::JOB_STATE_ASSIGNED) {
      absl::Status status = Transition(*entry, v1::JOB_STATE_RUNNING, nullptr);
      if (!status.ok()) return done(status);
    }
    if (incoming.has_state_change()) continue;  // states belong to the scheduler
    v1::JobEvent event = incoming;
    event.clear_sequence();
    switch (event.kind_case()) {
      case v1::JobEvent::kPhaseChange:
        job.set_phase(event.phase_change().phase());
        break;
      case v1::JobEvent::kProgress:
        *job.mutable_progress() = event.progress();
        break;
      case v1::JobEvent::kResult:
        *job.mutable_result() = event.result();
        break;
      default:
        break;
    }
    AppendEvent(*entry, std::move(event));
    ++stored;
  }
  if (observer_ != nullptr && stored > 0) observer_->OnEventsIngested(stored);
  const int64_t ack = entry->stored.worker_sequence;
  Commit([ack, done](absl::Status status) {
    if (!status.ok()) return done(status);
    done(ack);
  });
}

absl::Status Scheduler::FinishJob(const std::string& worker_id, WorkerLink* link,
                                  const v1::JobFinished& finished) {
  absl::MutexLock lock(&mu_);
  RETURN_IF_ERROR(FindWorker(worker_id, link).status());
  JobEntry* entry = Find(finished.job_id());
  if (entry == nullptr || entry->stored.job.worker_id() != worker_id ||
      !IsActive(entry->stored.job.state())) {
    return absl::FailedPreconditionError(
        absl::StrCat("job ", finished.job_id(), " is not running on worker ", worker_id));
  }
  const v1::JobState to = finished.state();
  if (to != v1::JOB_STATE_SUCCEEDED && to != v1::JOB_STATE_FAILED &&
      to != v1::JOB_STATE_CANCELLED) {
    return absl::InvalidArgumentError(
        "finished.state: must be SUCCEEDED, FAILED or CANCELLED");
  }
  v1::Job& job = entry->stored.job;
  if (job.state() == v1::JOB_STATE_ASSIGNED && to != v1::JOB_STATE_FAILED) {
    RETURN_IF_ERROR(Transition(*entry, v1::JOB_STATE_RUNNING, nullptr));
  }
  if (to == v1::JOB_STATE_CANCELLED && job.state() == v1::JOB_STATE_RUNNING) {
    RETURN_IF_ERROR(Transition(*entry, v1::JOB_STATE_CANCELLING, nullptr));
  }
  if (finished.has_result()) *job.mutable_result() = finished.result();
  v1::Failure failure = finished.failure();
  if (to == v1::JOB_STATE_FAILED && failure.reason() == v1::FAILURE_REASON_UNSPECIFIED) {
    failure.set_reason(v1::FAILURE_REASON_INTERNAL);
  }
  if (to == v1::JOB_STATE_CANCELLED) {
    failure.set_reason(v1::FAILURE_REASON_CANCELLED);
    if (failure.message().empty()) failure.set_message("cancelled");
  }
  if (to == v1::JOB_STATE_SUCCEEDED) {
    job.set_phase(v1::PHASE_DONE);
    job.mutable_progress()->set_fraction(1.0);
    job.mutable_progress()->set_eta_seconds(0);
  }
  RETURN_IF_ERROR(
      Transition(*entry, to, to == v1::JOB_STATE_SUCCEEDED ? nullptr : &failure));
  Dispatch();
  Commit(nullptr);
  return absl::OkStatus();
}

absl::Status Scheduler::RejectAssignment(const std::string& worker_id, WorkerLink* link,
                                         const v1::AssignmentRejected& rejected) {
  absl::MutexLock lock(&mu_);
  RETURN_IF_ERROR(FindWorker(worker_id, link).status());
  JobEntry* entry = Find(rejected.job_id());
  if (entry == nullptr || entry->stored.job.worker_id() != worker_id ||
      !IsActive(entry->stored.job.state())) {
    return absl::FailedPreconditionError(
        absl::StrCat("job ", rejected.job_id(), " is not assigned to worker ", worker_id));
  }
  const v1::JobState state = entry->stored.job.state();
  entry->rejected_by.insert(worker_id);
  v1::JobEvent log;
  log.mutable_log()->set_level("warning");
  log.mutable_log()->set_message(
      absl::StrCat("worker ", worker_id, " rejected the job: ", rejected.reason()));
  AppendEvent(*entry, std::move(log));
  if (state == v1::JOB_STATE_CANCELLING) {
    const v1::Failure failure = MakeFailure(v1::FAILURE_REASON_CANCELLED, "cancelled");
    RETURN_IF_ERROR(Transition(*entry, v1::JOB_STATE_CANCELLED, &failure));
  } else if (state == v1::JOB_STATE_ASSIGNED) {
    RETURN_IF_ERROR(Transition(*entry, v1::JOB_STATE_QUEUED, nullptr));
  } else {
    return absl::FailedPreconditionError(
        absl::StrCat("job ", rejected.job_id(), " already started; it cannot be rejected"));
  }
  Dispatch();
  Commit(nullptr);
  return absl::OkStatus();
}

void Scheduler::Tick() {
  absl::MutexLock lock(&mu_);
  const absl::Time now = clock_->Now();
  std::vector<std::string> lost;
  for (const auto& [id, worker] : workers_) {
    if (now >= worker.lost_at) lost.push_back(id);
  }
  if (lost.empty()) return;
  for (const std::string& id : lost) {
    const bool connected = workers_.at(id).link != nullptr;
    LoseWorker(id, connected ? "missed heartbeats" : "did not reconnect in time");
  }
  Dispatch();
  Commit(nullptr);
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
