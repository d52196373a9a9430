// The worker's connection to the scheduler: one WorkerService.Connect stream, kept open.
//
// Sends Hello (devices, the jobs still running here with their acknowledged sequence),
// heartbeats, the events queued in the EventOutbox (resending everything unacknowledged
// after a reconnect) and job finishes; receives Welcome, assignments, cancellations and
// acknowledgements. When the stream breaks it reconnects with exponential backoff and
// jitter; running jobs never stop because of it. A refused token (UNAUTHENTICATED,
// PERMISSION_DENIED) is logged as an error on every try, and tries are max_backoff apart.
// Every Hello carries the process's instance_id; a worker_id in use by another live worker
// process (ALREADY_EXISTS) is logged as an error on every try, retried with growing backoff.
//
// A finish is sent once every event of its job is acknowledged, so that the next EventsAck
// of the job (same attempt) acknowledges the finish itself: quantd sends one when the
// finish is recorded. An acknowledged finish is forgotten. One that is not stays pending,
// is named in the next Hello's running_jobs (so that the scheduler re-attaches the job
// instead of requeuing it) and is sent again if the job is re-attached; a Welcome that does
// not re-attach it shows the scheduler no longer needs it. So a finish sent just before a
// break is never lost, and a recorded one is never reported as running.
//
// Attempts: every JobEvents, JobFinished and Hello.running_jobs[] names the attempt it
// belongs to (worker_service.proto, "Attempts"): events carry the attempt their outbox
// queue was started for (EventOutbox::StartAttempt), finishes the attempt set by the
// caller, running jobs the attempt from LinkCallbacks::running_jobs. An EventsAck naming
// another attempt than the outbox queue's is ignored.
//
// Thread-safety: all public methods are thread-safe. Callbacks run on the link's reader
// thread and must not block for long.
#ifndef QUANTD_WORKER_LINK_SCHEDULER_LINK_H_
#define QUANTD_WORKER_LINK_SCHEDULER_LINK_H_

#include <chrono>
#include <condition_variable>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "quantd/v1/worker_service.grpc.pb.h"
#include "worker/link/event_outbox.h"

namespace quantd::link {

struct LinkOptions {
  std::string scheduler_address;
  // Worker token ("Bearer" is added); empty = none.
  std::string token;
  std::string ca_cert_path;
  std::string worker_id;
  // Hello.instance_id: tells this process's reconnects from another process with the same
  // worker_id. Empty = one random id drawn per process (the same for every link in it).
  std::string instance_id;
  std::string hostname;
  std::string version;
  int max_jobs = 1;
  // Fresh device figures for Hello and every heartbeat.
  std::function<std::vector<v1::Device>()> devices;
  std::chrono::milliseconds min_backoff{100};
  std::chrono::milliseconds max_backoff{10000};
  // Used until the scheduler's Welcome says otherwise.
  std::chrono::milliseconds heartbeat_interval{5000};
  // Events per JobEvents message.
  size_t batch_size = 512;
  // On Stop, how long the scheduler gets to handle what was sent before the stream is cut.
  std::chrono::milliseconds close_timeout{5000};
};

struct LinkCallbacks {
  std::function<void(const v1::Assignment&)> on_assignment;
  std::function<void(const v1::Cancellation&)> on_cancellation;
  // Jobs running here that the scheduler does not want (Welcome.stop_jobs): it has requeued
  // or finished them, so the worker must stop them without reporting. Called before any event
  // of the new session is sent.
  std::function<void(const std::string& job_id)> on_stop_job;
  // The jobs running here now, with job_id and attempt set (for Hello; the link fills in
  // acked_sequence). A job here supersedes a pending finish of the same job.
  std::function<std::vector<v1::RunningJob>()> running_jobs;
  // A stream ended (not called for the end Stop() causes), with the scheduler's status:
  // UNAUTHENTICATED / PERMISSION_DENIED when it refused the token.
  std::function<void(const grpc::Status& status)> on_session_end;
};

class SchedulerLink {
 public:
  // `outbox` must outlive the link.
  SchedulerLink(LinkOptions options, LinkCallbacks callbacks, EventOutbox* outbox);
  ~SchedulerLink();

  void Start();
  // Sends the events and finishes still queued, closes the stream's sending side and waits
  // (up to close_timeout) for the scheduler to end it, so that a finish reported just before
  // Stop is handled; then cuts the stream and joins the threads.
  void Stop();

  // New events are in the outbox.
  void Notify();
  // The job ended; sent after its events. `finished.attempt` should be set.
  void Finish(const v1::JobFinished& finished);
  // Refuses an assignment (`rejected.attempt` should be set): the scheduler queues the job for
  // another worker. Sent once the stream is welcomed (kept across a broken stream until then).
  void Reject(const v1::AssignmentRejected& rejected);
  // Heartbeats say "draining": the scheduler sends no new jobs. A heartbeat goes out at once,
  // before any finish reported after this call.
  void SetDraining(bool draining);

  bool connected() const;
  // Times a stream was established (1 after the first connect).
  int sessions() const;

 private:
  void ConnectLoop();
  // Runs one stream until it breaks or Stop; returns true when it got as far as Welcome.
  // `refused`: the scheduler refused the token (UNAUTHENTICATED or PERMISSION_DENIED).
  bool RunSession(bool* refused);

  const LinkOptions options_;
  const std::string instance_id_;
  const LinkCallbacks callbacks_;
  EventOutbox* const outbox_;
  std::unique_ptr<v1::WorkerService::Stub> stub_;

  mutable std::mutex mu_;
  std::condition_variable wake_;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  bool connected_ ABSL_GUARDED_BY(mu_) = false;
  bool stream_broken_ ABSL_GUARDED_BY(mu_) = false;
  bool draining_ ABSL_GUARDED_BY(mu_) = false;
  bool work_ ABSL_GUARDED_BY(mu_) = false;
  bool heartbeat_now_ ABSL_GUARDED_BY(mu_) = false;
  int sessions_ ABSL_GUARDED_BY(mu_) = 0;
  std::chrono::milliseconds heartbeat_interval_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, v1::JobFinished> finishes_ ABSL_GUARDED_BY(mu_);
  // Finishes sent in this session and not acknowledged yet.
  std::set<std::string> finishes_sent_ ABSL_GUARDED_BY(mu_);
  std::vector<v1::AssignmentRejected> rejections_ ABSL_GUARDED_BY(mu_);
  grpc::ClientContext* context_ ABSL_GUARDED_BY(mu_) = nullptr;
  std::thread thread_;
};

}  // namespace quantd::link

#endif  // QUANTD_WORKER_LINK_SCHEDULER_LINK_H_
