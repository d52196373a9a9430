// Scheduler: the owner of every job. Plain C++ (no gRPC): the RPC layer in server/rpc/
// converts protos and statuses and calls in here.
//
// What it does: idempotent submit (validated, defaults applied), the job state machine
// (job_state.h), the queue (priority, then submission order), per-owner running limits,
// placement on workers (placement.h), the worker registry (hello, heartbeats, loss,
// re-attach, draining), event ingest with per-job sequence numbers, and recovery from the
// store on start.
//
// Durability: every change is written to the JobStore; callbacks (`done`) run after the
// change is committed, and events reach the EventSink only after they are committed.
//
// Errors: INVALID_ARGUMENT (bad spec or request, or one over a limit of limits.h; the
// message names the field), NOT_FOUND
// (unknown job), ALREADY_EXISTS (request_id reused with another spec), PERMISSION_DENIED
// (another owner's job), FAILED_PRECONDITION (a worker speaks about a job it does not run).
//
// Attempts: a worker message that names an attempt (its `attempt` field is set) is stale
// when that is not the job's current attempt or the job is no longer assigned to that
// worker. Stale messages change nothing and are not errors: IngestEvents acknowledges the
// batch without storing it, FinishJob and RejectAssignment return OK, ConnectWorker puts
// the job in Welcome.stop_jobs; each is logged as a warning and reported to
// SchedulerObserver::OnStaleWorkerMessage. Messages without an attempt (older workers)
// are handled as before.
//
// Thread safety: all methods are thread-safe. Callbacks run on the store's thread (or
// inline when the store calls them inline) without the scheduler's lock; they must not
// block for long. The scheduler calls WorkerLink and SchedulerObserver with its lock held.
#ifndef QUANTD_SERVER_CORE_SCHEDULER_H_
#define QUANTD_SERVER_CORE_SCHEDULER_H_

#include <cstdint>
#include <functional>
#include <map>
#include <set>
#include <string>
#include <tuple>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "quantd/v1/job.pb.h"
#include "quantd/v1/quantize_service.pb.h"
#include "quantd/v1/worker_service.pb.h"
#include "server/core/clock.h"
#include "server/core/event_bus.h"
#include "server/core/job_store.h"
#include "server/core/placement.h"
#include "server/core/scheduler_observer.h"
#include "server/core/worker_link.h"

namespace quantd {

// Who is calling (from the bearer token).
struct Caller {
  std::string name;
  bool admin = false;
};

struct SchedulerOptions {
  // Jobs of one owner that may hold workers at once; 0 = no limit.
  int max_running_per_owner = 0;
  // A job that lost its worker this many times fails with WORKER_LOST.
  int max_requeues = 3;
  // Heartbeat period announced to workers.
  absl::Duration heartbeat_interval = absl::Seconds(5);
  // A worker silent (or disconnected) this long is lost and its jobs are requeued.
  absl::Duration worker_lost_after = absl::Seconds(15);
  // After a restart, how long jobs that were running wait for their worker to re-attach.
  absl::Duration reattach_grace = absl::Seconds(60);
  // Called when the store fails to commit (the in-memory state is then ahead of the
  // store). The quantd executable aborts, so that a restart recovers a consistent state
  // (unless the database is damaged: see StoreFailureMessage in server/store).
  std::function<void(const absl::Status&)> on_store_failure;
};

struct SubmitResult {
  v1::Job job;
  bool deduplicated = false;
};

struct ListQuery {
  int page_size = 0;
  std::string page_token;
  std::vector<v1::JobState> states;
  std::string owner;
};

struct ListResult {
  std::vector<v1::Job> jobs;
  std::string next_page_token;
};

struct SchedulerStats {
  std::map<v1::JobState, int64_t> jobs_by_state;
  int64_t workers_connected = 0;
  int64_t devices_total = 0;
  int64_t devices_busy = 0;
};

class Scheduler {
 public:
  template <typename T>
  using Callback = std::function<void(absl::StatusOr<T>)>;

  // None of the pointers is owned; all must outlive the scheduler. `observer` may be null.
  Scheduler(SchedulerOptions options, Clock* clock, JobStore* store, EventSink* sink,
            SchedulerObserver* observer = nullptr);

  // Loads every job from the store. Call once, before anything else. Jobs that were active
  // wait `reattach_grace` for their worker.
  absl::Status Recover();

  // ---- users ----
  void Submit(const Caller& caller, v1::JobSpec spec, const std::string& request_id,
              Callback<SubmitResult> done);
  absl::StatusOr<v1::Job> GetJob(const Caller& caller, const std::string& job_id) const;
  absl::StatusOr<ListResult> ListJobs(const Caller& caller, const ListQuery& query) const;
  // A queued job ends CANCELLED at once; an assigned or running one goes CANCELLING until its
  // worker reports the end. Either way the CANCELLED failure's message names the caller and
  // `reason` ("cancelled by alice: too big").
  void CancelJob(const Caller& caller, const std::string& job_id, const std::string& reason,
                 Callback<v1::Job> done);
  // Loss points and metrics of the job's current (for an ended job: last) attempt, from the
  // stored events after its last requeue. Reads the store: may block briefly.
  absl::StatusOr<v1::JobMetrics> GetJobMetrics(const Caller& caller, const std::string& job_id);

  // ---- workers ----
  // A worker said Hello on `link` (not owned; valid until DisconnectWorker(link) returns or
  // the scheduler calls link->Close). Sends Welcome, then assignments, through `link`.
  // INVALID_ARGUMENT for a Hello without worker_id or devices, with repeated or empty device
  // ids, negative memory, max_jobs < 0, or over a limit of limits.h (worker_id and
  // instance_id: kMaxWorkerIdLength). A link of the same worker_id is closed (ABORTED) and
  // replaced, with a warning naming both peers, when the Hellos' instance_ids are equal or
  // either is empty (the same process reconnecting), or when that link has not been heard
  // from within worker_lost_after. Otherwise another process uses the id: ALREADY_EXISTS
  // ("worker id w1 is in use by another live worker (from <peer>)"), logged as an error,
  // and the connected worker and its jobs are untouched.
  absl::Status ConnectWorker(const v1::Hello& hello, WorkerLink* link);
  // The stream of `link` ended. Its jobs wait `worker_lost_after` for a re-attach.
  void DisconnectWorker(const std::string& worker_id, WorkerLink* link);
  // INVALID_ARGUMENT for devices a Hello could not have.
  absl::Status Heartbeat(const std::string& worker_id, WorkerLink* link,
                         const v1::Heartbeat& heartbeat);
  // Stores the events; `done` gets the worker sequence to acknowledge once committed (for
  // a stale attempt's events, at once: the last sequence of the batch, nothing stored).
  // INVALID_ARGUMENT for a first_worker_sequence out of range (limits.h). Events without a
  // kind or with an unknown phase are dropped but acknowledged; progress is clamped to
  // 0..1 and a non-finite or negative ETA stored as -1.
  void IngestEvents(const std::string& worker_id, WorkerLink* link, const v1::JobEvents& events,
                    Callback<int64_t> done);
  // A CANCELLED finish of a job that is not CANCELLING (the worker stopped it, nobody
  // cancelled it) requeues the job as a worker loss does (counted toward max_requeues).
  // When it returns OK, `recorded` (may be null) gets the job's stored worker sequence once
  // the finish is committed (a stale finish: 0, at once), for the adapter's EventsAck that
  // tells the worker the finish need not be sent again.
  absl::Status FinishJob(const std::string& worker_id, WorkerLink* link,
                         const v1::JobFinished& finished,
                         std::function<void(int64_t worker_sequence)> recorded = nullptr);
  absl::Status RejectAssignment(const std::string& worker_id, WorkerLink* link,
                                const v1::AssignmentRejected& rejected);

  // Loses silent workers and expired re-attach waits. Call periodically (the server does
  // every ~100 ms; tests after advancing their clock).
  void Tick();

  SchedulerStats Stats() const;
  const SchedulerOptions& options() const { return options_; }

 private:
  struct JobEntry {
    StoredJob stored;
    absl::Time queued_since;
    // Why it waits, as found by the Dispatch() pass numbered `reason_pass`; older reasons
    // are stale and the scheduler-wide reason applies.
    std::string pending_reason;
    int64_t reason_pass = 0;
    std::set<std::string> rejected_by;
    // While CANCELLING: who cancelled the job and why ("cancelled by alice: too big"), the
    // message of its CANCELLED failure. Not stored: after a restart it is "cancelled".
    std::string cancel_message;
  };
  struct WorkerEntry {
    v1::Hello hello;
    std::vector<v1::Device> devices;
    WorkerLink* link = nullptr;
    bool draining = false;
    int max_jobs = 1;
    absl::Time last_seen;
    absl::Time lost_at;
    std::set<std::string> jobs;
  };
  using QueueKey = std::tuple<int, int64_t, std::string>;  // (-priority, order, id)

  static QueueKey KeyOf(const JobEntry& entry);
  static std::string IdempotencyMapKey(const std::string& owner, const std::string& request_id);
  JobEntry* Find(const std::string& job_id) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::StatusOr<JobEntry*> FindVisible(const Caller& caller, const std::string& job_id)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::StatusOr<WorkerEntry*> FindWorker(const std::string& worker_id, WorkerLink* link)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  v1::Job View(const JobEntry& entry) const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // True when a message of `worker_id` naming `attempt` (unset: an older worker, never
  // stale) is about an attempt of `entry` that is not the one assigned to that worker now.
  bool IsStale(const JobEntry& entry, const std::string& worker_id, bool has_attempt,
               int32_t attempt) const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Logs and counts a dropped stale message.
  void ReportStale(WorkerMessageKind kind, const JobEntry& entry, const std::string& worker_id,
                   int32_t attempt) const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  // Appends an event to the job (sequence, time) and marks the job for writing.
  void AppendEvent(JobEntry& entry, v1::JobEvent event) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // The only place a job's state changes. Keeps the indexes in step and records the event.
  absl::Status Transition(JobEntry& entry, v1::JobState to, const v1::Failure* failure)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // The job's worker is gone: requeue it, or fail/cancel it.
  void LoseJob(JobEntry& entry, const std::string& why, bool stopped_by_worker = false)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void LoseWorker(const std::string& worker_id, const std::string& why)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  std::vector<WorkerCandidate> Candidates(const JobEntry& entry) const
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  bool AnyCapacity() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Places queued jobs on workers while possible; records pending reasons.
  void Dispatch() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void RecordWorker(const std::string& worker_id) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Writes everything changed since the last Commit; `done` runs after it committed and the
  // events were published. `done` may be null.
  void Commit(std::function<void(absl::Status)> done) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const SchedulerOptions options_;
  Clock* const clock_;
  JobStore* const store_;
  EventSink* const sink_;
  SchedulerObserver* const observer_;

  mutable absl::Mutex mu_;
  std::map<std::string, JobEntry> jobs_ ABSL_GUARDED_BY(mu_);
  std::map<int64_t, std::string> by_order_ ABSL_GUARDED_BY(mu_);
  std::set<QueueKey> queue_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, std::string> idempotency_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, WorkerEntry> workers_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, int> active_by_owner_ ABSL_GUARDED_BY(mu_);
  std::map<v1::JobState, int64_t> state_counts_ ABSL_GUARDED_BY(mu_);
  std::string global_pending_reason_ ABSL_GUARDED_BY(mu_);
  int64_t dispatch_pass_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t next_job_number_ ABSL_GUARDED_BY(mu_) = 1;
  int64_t next_submit_order_ ABSL_GUARDED_BY(mu_) = 1;

  // Changes not yet handed to the store.
  std::set<std::string> dirty_jobs_ ABSL_GUARDED_BY(mu_);
  std::set<std::string> new_jobs_ ABSL_GUARDED_BY(mu_);
  std::vector<v1::JobEvent> pending_events_ ABSL_GUARDED_BY(mu_);
  std::vector<IdempotencyKey> pending_keys_ ABSL_GUARDED_BY(mu_);
  std::vector<WorkerRecord> pending_workers_ ABSL_GUARDED_BY(mu_);
};

}  // namespace quantd

#endif  // QUANTD_SERVER_CORE_SCHEDULER_H_
