// Part of Scheduler (see scheduler.h): its user-facing operations.
#include <algorithm>
#include <utility>

#include "absl/strings/escaping.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "google/protobuf/util/message_differencer.h"
#include "proto/common/status_macros.h"
#include "proto/spec/defaults.h"
#include "proto/spec/validate.h"
#include "server/core/failure.h"
#include "server/core/job_state.h"
#include "server/core/limits.h"
#include "server/core/scheduler.h"
#include "server/core/time_util.h"

namespace quantd {
namespace {

constexpr int kDefaultPageSize = 50;
constexpr int kMaxPageSize = 1000;

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

}  // namespace

void Scheduler::Submit(const Caller& caller, v1::JobSpec spec, const std::string& request_id,
                       Callback<SubmitResult> done) {
  if (request_id.size() > kMaxRequestIdLength) {
    done(absl::InvalidArgumentError(
        absl::StrCat("request_id: at most ", kMaxRequestIdLength, " characters")));
    return;
  }
  if (const size_t spec_bytes = spec.ByteSizeLong(); spec_bytes > kMaxSpecBytes) {
    done(absl::InvalidArgumentError(absl::StrCat("spec: ", spec_bytes,
                                                 " bytes serialized, the limit is ", kMaxSpecBytes,
                                                 " (a real spec is under 2 KiB)")));
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
        done(absl::AlreadyExistsError(absl::StrCat("request_id: \"", request_id,
                                                   "\" was used for job ", known->second,
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

absl::StatusOr<v1::Job> Scheduler::GetJob(const Caller& caller, const std::string& job_id) const {
  absl::MutexLock lock(&mu_);
  ASSIGN_OR_RETURN(JobEntry * entry, const_cast<Scheduler*>(this)->FindVisible(caller, job_id));
  return View(*entry);
}

absl::StatusOr<ListResult> Scheduler::ListJobs(const Caller& caller, const ListQuery& query) const {
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
  for (const v1::JobState state : query.states) {
    if (!v1::JobState_IsValid(state)) {
      return absl::InvalidArgumentError(
          absl::StrCat("states: ", static_cast<int>(state), " is not a JobState"));
    }
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
  if (reason.size() > kMaxCancelReasonBytes) {
    done(absl::InvalidArgumentError(
        absl::StrCat("reason: ", reason.size(), " bytes, the limit is ", kMaxCancelReasonBytes)));
    return;
  }
  absl::MutexLock lock(&mu_);
  absl::StatusOr<JobEntry*> found = FindVisible(caller, job_id);
  if (!found.ok()) {
    done(found.status());
    return;
  }
  JobEntry& entry = **found;
  v1::Job& job = entry.stored.job;
  const std::string why = reason.empty() ? absl::StrCat("cancelled by ", caller.name)
                                         : absl::StrCat("cancelled by ", caller.name, ": ", reason);
  if (job.state() == v1::JOB_STATE_QUEUED) {
    const v1::Failure failure = MakeFailure(v1::FAILURE_REASON_CANCELLED, why);
    absl::Status status = Transition(entry, v1::JOB_STATE_CANCELLED, &failure);
    if (!status.ok()) return done(status);
    Dispatch();
  } else if (job.state() == v1::JOB_STATE_ASSIGNED || job.state() == v1::JOB_STATE_RUNNING) {
    absl::Status status = Transition(entry, v1::JOB_STATE_CANCELLING, nullptr);
    if (!status.ok()) return done(status);
    entry.cancel_message = why;
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
    ASSIGN_OR_RETURN(std::vector<v1::JobEvent> events, store_->ReadEvents(job_id, after, kPage));
    for (const v1::JobEvent& event : events) {
      // A requeue starts a new attempt: only the current attempt's points and metrics count.
      if (event.has_state_change() && event.state_change().to() == v1::JOB_STATE_QUEUED) {
        metrics.clear_loss();
        metrics.clear_metrics();
      }
      if (event.has_loss()) *metrics.add_loss() = event.loss();
      if (event.has_metric()) *metrics.add_metrics() = event.metric();
      after = event.sequence();
    }
    if (static_cast<int>(events.size()) < kPage) break;
  }
  return metrics;
}

}  // namespace quantd
