// Part of Scheduler (see scheduler.h): its side of the worker protocol.
#include <algorithm>
#include <cmath>
#include <set>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "proto/common/status_macros.h"
#include "server/core/failure.h"
#include "server/core/job_state.h"
#include "server/core/limits.h"
#include "server/core/scheduler.h"
#include "spdlog/spdlog.h"

namespace quantd {

namespace {

// INVALID_ARGUMENT naming `field` (e.g. "hello.devices") unless `devices` is a usable set.
absl::Status ValidateDevices(const google::protobuf::RepeatedPtrField<v1::Device>& devices,
                             const std::string& field) {
  if (devices.size() > kMaxWorkerDevices) {
    return absl::InvalidArgumentError(
        absl::StrCat(field, ": ", devices.size(), " devices, the limit is ", kMaxWorkerDevices));
  }
  std::set<std::string> ids;
  for (const v1::Device& device : devices) {
    if (device.id().empty())
      return absl::InvalidArgumentError(absl::StrCat(field, ".id: required"));
    if (!ids.insert(device.id()).second) {
      return absl::InvalidArgumentError(
          absl::StrCat(field, ".id: \"", device.id(), "\" appears more than once"));
    }
    if (device.total_memory_bytes() < 0 || device.free_memory_bytes() < 0) {
      return absl::InvalidArgumentError(
          absl::StrCat(field, ": device \"", device.id(), "\" has negative memory (total ",
                       device.total_memory_bytes(), ", free ", device.free_memory_bytes(), ")"));
    }
  }
  return absl::OkStatus();
}

absl::Status ValidateHello(const v1::Hello& hello) {
  if (hello.worker_id().empty()) return absl::InvalidArgumentError("hello.worker_id: required");
  if (hello.worker_id().size() > kMaxWorkerIdLength) {
    return absl::InvalidArgumentError(absl::StrCat("hello.worker_id: ", hello.worker_id().size(),
                                                   " bytes, the limit is ", kMaxWorkerIdLength));
  }
  if (hello.devices_size() == 0) {
    return absl::InvalidArgumentError("hello.devices: at least one device is required");
  }
  if (hello.instance_id().size() > kMaxWorkerIdLength) {
    return absl::InvalidArgumentError(
        absl::StrCat("hello.instance_id: ", hello.instance_id().size(), " bytes, the limit is ",
                     kMaxWorkerIdLength));
  }
  if (hello.max_jobs() < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("hello.max_jobs: must be >= 0 (0 = 1), got ", hello.max_jobs()));
  }
  return ValidateDevices(hello.devices(), "hello.devices");
}

// Makes a worker's event fit to store: a progress fraction outside 0..1 is clamped (a
// non-finite one keeps the job's current fraction), a non-finite or negative ETA becomes
// -1 (unknown). Returns why the event must be dropped instead (no kind, or a phase that is
// not a Phase value), or "" when it may be stored.
std::string SanitizeWorkerEvent(const v1::Job& job, v1::JobEvent& event) {
  switch (event.kind_case()) {
    case v1::JobEvent::KIND_NOT_SET:
      return "an event without a kind";
    case v1::JobEvent::kPhaseChange:
      if (!v1::Phase_IsValid(event.phase_change().phase())) {
        return absl::StrCat("phase_change.phase ", event.phase_change().phase(), " is not a Phase");
      }
      return "";
    case v1::JobEvent::kLoss:
      if (!v1::Phase_IsValid(event.loss().phase())) {
        return absl::StrCat("loss.phase ", event.loss().phase(), " is not a Phase");
      }
      return "";
    case v1::JobEvent::kProgress: {
      v1::Progress& progress = *event.mutable_progress();
      if (!std::isfinite(progress.fraction())) {
        progress.set_fraction(job.progress().fraction());
      } else {
        progress.set_fraction(std::clamp(progress.fraction(), 0.0, 1.0));
      }
      if (!std::isfinite(progress.eta_seconds()) || progress.eta_seconds() < 0) {
        progress.set_eta_seconds(-1);
      }
      return "";
    }
    default:
      return "";
  }
}

std::string PeerOrUnknown(const WorkerLink& link) {
  std::string peer = link.peer();
  return peer.empty() ? "an unknown address" : peer;
}

}  // namespace

absl::Status Scheduler::ConnectWorker(const v1::Hello& hello, WorkerLink* link) {
  RETURN_IF_ERROR(ValidateHello(hello));
  absl::MutexLock lock(&mu_);
  const absl::Time now = clock_->Now();
  WorkerEntry& worker = workers_[hello.worker_id()];
  if (worker.link != nullptr && worker.link != link) {
    const std::string& old_instance = worker.hello.instance_id();
    const bool same_process =
        old_instance.empty() || hello.instance_id().empty() || old_instance == hello.instance_id();
    if (!same_process && now < worker.lost_at) {
      // Two worker processes configured with the same id: replacing would make them take
      // turns (each reconnects at once) and lose the running jobs on every turn.
      spdlog::error(
          "worker {}: refused a connection from {} (instance {}): the id is in use by the live "
          "worker from {} (instance {}); two workers share a --worker_id",
          hello.worker_id(), PeerOrUnknown(*link), hello.instance_id(), PeerOrUnknown(*worker.link),
          old_instance);
      return absl::AlreadyExistsError(absl::StrCat("worker id ", hello.worker_id(),
                                                   " is in use by another live worker (from ",
                                                   PeerOrUnknown(*worker.link), ")"));
    }
    // Legitimate after a reconnect the old stream did not notice yet (or after the old
    // connection went silent past the loss timeout); otherwise someone poses as the worker.
    spdlog::warn(
        "worker {}: a new connection from {} replaces the live one from {} (a reconnect, or "
        "two workers with the same id)",
        hello.worker_id(), PeerOrUnknown(*link), PeerOrUnknown(*worker.link));
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
    if (entry != nullptr &&
        IsStale(*entry, hello.worker_id(), running.has_attempt(), running.attempt())) {
      // An attempt the scheduler gave up on, even if this worker holds the current one.
      ReportStale(WorkerMessageKind::kHello, *entry, hello.worker_id(), running.attempt());
      welcome->add_stop_jobs(running.job_id());
    } else if (entry != nullptr && IsActive(entry->stored.job.state()) &&
               entry->stored.job.worker_id() == hello.worker_id() &&
               worker.jobs.count(running.job_id()) > 0) {
      v1::RunningJob* back = welcome->add_reattached();
      back->set_job_id(running.job_id());
      back->set_acked_sequence(entry->stored.worker_sequence);
      back->set_attempt(entry->stored.job.attempt());
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
      LoseJob(*entry, absl::StrCat("worker ", hello.worker_id(), " reconnected without the job"));
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
  if (heartbeat.devices_size() > 0) {
    RETURN_IF_ERROR(ValidateDevices(heartbeat.devices(), "heartbeat.devices"));
  }
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
  const int64_t first = events.first_worker_sequence();
  if (first < 0 || first > kMaxWorkerSequence) {
    return done(absl::InvalidArgumentError(absl::StrCat("events.first_worker_sequence: ", first,
                                                        " is out of range (1..", kMaxWorkerSequence,
                                                        ", or 0 = after the stored one)")));
  }
  absl::MutexLock lock(&mu_);
  absl::StatusOr<WorkerEntry*> worker = FindWorker(worker_id, link);
  if (!worker.ok()) return done(worker.status());
  JobEntry* entry = Find(events.job_id());
  if (entry != nullptr && IsStale(*entry, worker_id, events.has_attempt(), events.attempt())) {
    ReportStale(WorkerMessageKind::kEvents, *entry, worker_id, events.attempt());
    // Acknowledged (EventsAck echoes the attempt) so that the worker stops resending them.
    return done(first > 0 ? first + events.events_size() - 1 : 0);
  }
  if (entry == nullptr || entry->stored.job.worker_id() != worker_id ||
      !IsActive(entry->stored.job.state())) {
    return done(absl::FailedPreconditionError(
        absl::StrCat("job ", events.job_id(), " is not running on worker ", worker_id)));
  }
  const int64_t next_expected = entry->stored.worker_sequence + 1;
  if (first > next_expected + kMaxWorkerSequenceGap) {
    return done(absl::InvalidArgumentError(absl::StrCat(
        "events.first_worker_sequence: ", first, " for job ", events.job_id(),
        " jumps past the next expected ", next_expected, " by more than ", kMaxWorkerSequenceGap)));
  }
  if (first > next_expected) {
    spdlog::warn("job {}: worker {} sent events from worker sequence {}; {}..{} never arrived",
                 events.job_id(), worker_id, first, next_expected, first - 1);
  }
  (*worker)->last_seen = clock_->Now();
  (*worker)->lost_at = (*worker)->last_seen + options_.worker_lost_after;
  v1::Job& job = entry->stored.job;
  int64_t worker_sequence = first > 0 ? first : next_expected;
  int64_t stored = 0;
  int dropped = 0;
  std::string first_drop_reason;
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
    // Counted as received (acknowledged), never stored.
    if (std::string why = SanitizeWorkerEvent(job, event); !why.empty()) {
      if (dropped++ == 0) first_drop_reason = std::move(why);
      continue;
    }
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
  if (dropped > 0) {
    // One line per batch, however many of its events were malformed.
    spdlog::warn("job {}: dropped {} malformed event(s) from worker {} (first: {})",
                 events.job_id(), dropped, worker_id, first_drop_reason);
  }
  if (observer_ != nullptr && stored > 0) observer_->OnEventsIngested(stored);
  const int64_t ack = entry->stored.worker_sequence;
  Commit([ack, done](absl::Status status) {
    if (!status.ok()) return done(status);
    done(ack);
  });
}

absl::Status Scheduler::FinishJob(const std::string& worker_id, WorkerLink* link,
                                  const v1::JobFinished& finished,
                                  std::function<void(int64_t)> recorded) {
  absl::MutexLock lock(&mu_);
  RETURN_IF_ERROR(FindWorker(worker_id, link).status());
  JobEntry* entry = Find(finished.job_id());
  if (entry != nullptr && IsStale(*entry, worker_id, finished.has_attempt(), finished.attempt())) {
    ReportStale(WorkerMessageKind::kFinished, *entry, worker_id, finished.attempt());
    if (recorded) recorded(0);  // the stored sequence is another attempt's
    return absl::OkStatus();
  }
  auto commit = [&] {
    if (!recorded) return Commit(nullptr);
    Commit([recorded = std::move(recorded),
            sequence = entry->stored.worker_sequence](absl::Status status) {
      if (status.ok()) recorded(sequence);
    });
  };
  if (entry == nullptr || entry->stored.job.worker_id() != worker_id ||
      !IsActive(entry->stored.job.state())) {
    return absl::FailedPreconditionError(
        absl::StrCat("job ", finished.job_id(), " is not running on worker ", worker_id));
  }
  const v1::JobState to = finished.state();
  if (to != v1::JOB_STATE_SUCCEEDED && to != v1::JOB_STATE_FAILED &&
      to != v1::JOB_STATE_CANCELLED) {
    return absl::InvalidArgumentError("finished.state: must be SUCCEEDED, FAILED or CANCELLED");
  }
  v1::Job& job = entry->stored.job;
  if (to == v1::JOB_STATE_CANCELLED && job.state() != v1::JOB_STATE_CANCELLING) {
    // Nobody asked for this cancel: the worker stopped the attempt (e.g. on SIGTERM). It is
    // requeued like a lost worker's, and counts toward max_requeues as such.
    const std::string& message = finished.failure().message();
    LoseJob(*entry,
            absl::StrCat("worker ", worker_id, " stopped the job", message.empty() ? "" : ": ",
                         message),
            /*stopped_by_worker=*/true);
    Dispatch();
    commit();
    return absl::OkStatus();
  }
  if (job.state() == v1::JOB_STATE_ASSIGNED && to != v1::JOB_STATE_FAILED) {
    RETURN_IF_ERROR(Transition(*entry, v1::JOB_STATE_RUNNING, nullptr));
  }
  if (finished.has_result()) *job.mutable_result() = finished.result();
  v1::Failure failure = finished.failure();
  if (to == v1::JOB_STATE_FAILED && failure.reason() == v1::FAILURE_REASON_UNSPECIFIED) {
    failure.set_reason(v1::FAILURE_REASON_INTERNAL);
  }
  if (to == v1::JOB_STATE_CANCELLED) {
    failure.set_reason(v1::FAILURE_REASON_CANCELLED);
    // The worker only knows that it was cancelled; the scheduler knows by whom and why.
    if (!entry->cancel_message.empty()) failure.set_message(entry->cancel_message);
    if (failure.message().empty()) failure.set_message("cancelled");
  }
  if (to == v1::JOB_STATE_SUCCEEDED) {
    job.set_phase(v1::PHASE_DONE);
    job.mutable_progress()->set_fraction(1.0);
    job.mutable_progress()->set_eta_seconds(0);
  }
  RETURN_IF_ERROR(Transition(*entry, to, to == v1::JOB_STATE_SUCCEEDED ? nullptr : &failure));
  Dispatch();
  commit();
  return absl::OkStatus();
}

absl::Status Scheduler::RejectAssignment(const std::string& worker_id, WorkerLink* link,
                                         const v1::AssignmentRejected& rejected) {
  absl::MutexLock lock(&mu_);
  RETURN_IF_ERROR(FindWorker(worker_id, link).status());
  JobEntry* entry = Find(rejected.job_id());
  if (entry != nullptr && IsStale(*entry, worker_id, rejected.has_attempt(), rejected.attempt())) {
    ReportStale(WorkerMessageKind::kRejected, *entry, worker_id, rejected.attempt());
    return absl::OkStatus();
  }
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
    const v1::Failure failure =
        MakeFailure(v1::FAILURE_REASON_CANCELLED,
                    entry->cancel_message.empty() ? "cancelled" : entry->cancel_message);
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

}  // namespace quantd
