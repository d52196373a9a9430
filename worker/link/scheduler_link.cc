#include "worker/link/scheduler_link.h"

#include <algorithm>
#include <cstdio>
#include <fstream>
#include <random>
#include <set>
#include <sstream>

#include "google/protobuf/util/time_util.h"
#include "grpcpp/create_channel.h"
#include "grpcpp/security/credentials.h"
#include "spdlog/spdlog.h"

namespace quantd::link {
namespace {

using Stream = grpc::ClientReaderWriter<v1::WorkerMessage, v1::SchedulerMessage>;

std::shared_ptr<grpc::ChannelCredentials> Credentials(const std::string& ca_cert_path) {
  if (ca_cert_path.empty()) return grpc::InsecureChannelCredentials();
  std::ifstream in(ca_cert_path);
  std::stringstream pem;
  pem << in.rdbuf();
  grpc::SslCredentialsOptions ssl;
  ssl.pem_root_certs = pem.str();
  return grpc::SslCredentials(ssl);
}

// 128 random bits in hex, drawn once per process.
const std::string& ProcessInstanceId() {
  static const std::string* const id = [] {
    std::random_device device;
    std::string hex;
    for (int i = 0; i < 4; ++i) {
      char word[9];
      std::snprintf(word, sizeof(word), "%08x", static_cast<unsigned>(device()));
      hex += word;
    }
    return new std::string(hex);
  }();
  return *id;
}

}  // namespace

SchedulerLink::SchedulerLink(LinkOptions options, LinkCallbacks callbacks, EventOutbox* outbox)
    : options_(std::move(options)),
      instance_id_(options_.instance_id.empty() ? ProcessInstanceId() : options_.instance_id),
      callbacks_(std::move(callbacks)),
      outbox_(outbox),
      heartbeat_interval_(options_.heartbeat_interval) {
  grpc::ChannelArguments arguments;
  arguments.SetMaxSendMessageSize(64 << 20);
  // Reconnects are ours to pace; keep gRPC's own backoff short.
  arguments.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS,
                   static_cast<int>(options_.max_backoff.count()));
  stub_ = v1::WorkerService::NewStub(grpc::CreateCustomChannel(
      options_.scheduler_address, Credentials(options_.ca_cert_path), arguments));
}

SchedulerLink::~SchedulerLink() { Stop(); }

void SchedulerLink::Start() {
  thread_ = std::thread([this] { ConnectLoop(); });
}

void SchedulerLink::Stop() {
  {
    std::unique_lock<std::mutex> lock(mu_);
    stopping_ = true;
    wake_.notify_all();
    // The session flushes and closes its stream; it is cut when the scheduler is too slow.
    if (!wake_.wait_for(lock, options_.close_timeout, [this] { return context_ == nullptr; })) {
      context_->TryCancel();
    }
  }
  if (thread_.joinable()) thread_.join();
}

void SchedulerLink::Notify() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    work_ = true;
  }
  wake_.notify_all();
}

void SchedulerLink::Finish(const v1::JobFinished& finished) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    finishes_[finished.job_id()] = finished;
    finishes_sent_.erase(finished.job_id());
    work_ = true;
  }
  wake_.notify_all();
}

void SchedulerLink::Reject(const v1::AssignmentRejected& rejected) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    rejections_.push_back(rejected);
    work_ = true;
  }
  wake_.notify_all();
}

void SchedulerLink::SetDraining(bool draining) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    draining_ = draining;
    heartbeat_now_ = true;
    work_ = true;
  }
  wake_.notify_all();
}

bool SchedulerLink::connected() const {
  std::lock_guard<std::mutex> lock(mu_);
  return connected_;
}

int SchedulerLink::sessions() const {
  std::lock_guard<std::mutex> lock(mu_);
  return sessions_;
}

void SchedulerLink::ConnectLoop() {
  std::mt19937 rng(std::random_device{}());
  std::uniform_real_distribution<double> jitter(0.5, 1.5);
  auto backoff = options_.min_backoff;
  while (true) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (stopping_) return;
    }
    bool refused = false;
    const bool welcomed = RunSession(&refused);
    // A refused token stays refused until someone fixes it: retry at the slowest pace.
    backoff = welcomed  ? options_.min_backoff
              : refused ? options_.max_backoff
                        : std::min(backoff * 2, options_.max_backoff);
    const auto wait = std::chrono::milliseconds(
        static_cast<int64_t>(static_cast<double>(backoff.count()) * jitter(rng)));
    std::unique_lock<std::mutex> lock(mu_);
    if (wake_.wait_for(lock, wait, [this] { return stopping_; })) return;
    spdlog::info("reconnecting to scheduler {}", options_.scheduler_address);
  }
}

bool SchedulerLink::RunSession(bool* refused) {
  grpc::ClientContext context;
  if (!options_.token.empty()) context.AddMetadata("authorization", "Bearer " + options_.token);
  std::map<std::string, v1::JobFinished> finishes_in_hello;
  v1::WorkerMessage hello_message;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (stopping_) return false;
    context_ = &context;
    stream_broken_ = false;
    finishes_in_hello = finishes_;
    finishes_sent_.clear();
  }
  std::unique_ptr<Stream> stream = stub_->Connect(&context);

  v1::Hello& hello = *hello_message.mutable_hello();
  hello.set_worker_id(options_.worker_id);
  hello.set_instance_id(instance_id_);
  hello.set_hostname(options_.hostname);
  hello.set_version(options_.version);
  hello.set_max_jobs(options_.max_jobs);
  if (options_.devices) {
    for (const auto& device : options_.devices()) *hello.add_devices() = device;
  }
  // Pending finishes first: a job running here now is a newer attempt of the same job. A
  // finish the scheduler has not acknowledged may not be recorded: named as running, it is
  // re-attached (and the finish sent again) instead of requeued for lack of a job.
  std::map<std::string, v1::RunningJob> running;
  for (const auto& [id, finished] : finishes_in_hello) {
    v1::RunningJob& job = running[id];
    job.set_job_id(id);
    if (finished.has_attempt()) job.set_attempt(finished.attempt());
  }
  if (callbacks_.running_jobs) {
    for (const auto& job : callbacks_.running_jobs()) running[job.job_id()] = job;
  }
  for (auto& [id, job] : running) {
    job.set_acked_sequence(outbox_->acked(id));
    *hello.add_running_jobs() = std::move(job);
  }

  bool welcomed = false;
  std::thread reader;
  if (stream->Write(hello_message)) {
    reader = std::thread([&] {
      v1::SchedulerMessage message;
      while (stream->Read(&message)) {
        switch (message.kind_case()) {
          case v1::SchedulerMessage::kWelcome: {
            const auto& welcome = message.welcome();
            std::set<std::string> reattached;
            for (const auto& job : welcome.reattached()) reattached.insert(job.job_id());
            // Refused jobs are stopped before the writer may send: none of their events may
            // reach the scheduler, which could take them for a next attempt's.
            for (const auto& id : welcome.stop_jobs()) {
              if (callbacks_.on_stop_job) callbacks_.on_stop_job(id);
            }
            {
              std::lock_guard<std::mutex> lock(mu_);
              if (welcome.heartbeat_interval_seconds() > 0) {
                heartbeat_interval_ = std::chrono::seconds(welcome.heartbeat_interval_seconds());
              }
              // Finishes the scheduler did not take back are already known to it.
              for (const auto& [id, finished] : finishes_in_hello) {
                if (reattached.count(id) == 0) {
                  finishes_.erase(id);
                  outbox_->Forget(id);
                }
              }
              connected_ = true;
              welcomed = true;
              ++sessions_;
              work_ = true;
            }
            wake_.notify_all();
            spdlog::info("connected to scheduler {} ({} job(s) re-attached)",
                         options_.scheduler_address, reattached.size());
            break;
          }
          case v1::SchedulerMessage::kAssignment:
            if (callbacks_.on_assignment) callbacks_.on_assignment(message.assignment());
            break;
          case v1::SchedulerMessage::kCancellation:
            if (callbacks_.on_cancellation) callbacks_.on_cancellation(message.cancellation());
            break;
          case v1::SchedulerMessage::kAck: {
            const auto& ack = message.ack();
            {
              // The finish went out after every event was acknowledged: a later ack of the
              // same attempt acknowledges the finish.
              std::lock_guard<std::mutex> lock(mu_);
              auto finished = finishes_.find(ack.job_id());
              if (finished != finishes_.end() && finishes_sent_.count(ack.job_id()) > 0 &&
                  (!ack.has_attempt() || !finished->second.has_attempt() ||
                   ack.attempt() == finished->second.attempt())) {
                const std::optional<int32_t> queued = outbox_->attempt(ack.job_id());
                if (!queued.has_value() || !finished->second.has_attempt() ||
                    *queued == finished->second.attempt()) {
                  outbox_->Forget(ack.job_id());
                }
                finishes_.erase(finished);
                finishes_sent_.erase(ack.job_id());
                break;
              }
            }
            // An ack of another attempt's events says nothing about the queued ones.
            const std::optional<int32_t> attempt = outbox_->attempt(ack.job_id());
            if (ack.has_attempt() && attempt.has_value() && ack.attempt() != *attempt) break;
            outbox_->Ack(ack.job_id(), ack.worker_sequence());
            Notify();
            break;
          }
          case v1::SchedulerMessage::KIND_NOT_SET:
            break;
        }
      }
      {
        std::lock_guard<std::mutex> lock(mu_);
        stream_broken_ = true;
        connected_ = false;
      }
      wake_.notify_all();
    });
  }

  // Writer: heartbeats, events and finishes until the stream breaks or Stop.
  std::map<std::string, int64_t> sent;
  auto next_heartbeat = std::chrono::steady_clock::now();
  bool healthy = reader.joinable();
  bool closing = false;  // Stop: last passes send what was queued
  while (healthy) {
    std::map<std::string, v1::JobFinished> finishes;
    std::vector<v1::AssignmentRejected> rejections;
    bool draining = false;
    {
      std::unique_lock<std::mutex> lock(mu_);
      wake_.wait_until(lock, next_heartbeat, [this, closing] {
        return (stopping_ && !closing) || stream_broken_ || work_;
      });
      if (stream_broken_ || (stopping_ && !welcomed)) break;
      closing = stopping_;
      work_ = false;
      for (const auto& [job_id, finished] : finishes_) {
        if (finishes_sent_.count(job_id) == 0) finishes.emplace(job_id, finished);
      }
      draining = draining_;
      if (heartbeat_now_ || std::chrono::steady_clock::now() >= next_heartbeat) {
        heartbeat_now_ = false;
        next_heartbeat = std::chrono::steady_clock::now() + heartbeat_interval_;
        v1::WorkerMessage beat;
        auto* heartbeat = beat.mutable_heartbeat();
        *heartbeat->mutable_time() = google::protobuf::util::TimeUtil::GetCurrentTime();
        heartbeat->set_draining(draining);
        lock.unlock();
        if (options_.devices) {
          for (const auto& device : options_.devices()) *heartbeat->add_devices() = device;
        }
        if (!stream->Write(beat)) {
          healthy = false;
          break;
        }
        lock.lock();
      }
      if (!welcomed) continue;
      rejections.swap(rejections_);
    }
    for (size_t i = 0; i < rejections.size() && healthy; ++i) {
      v1::WorkerMessage message;
      *message.mutable_rejected() = rejections[i];
      if (!stream->Write(message)) {
        healthy = false;
        std::lock_guard<std::mutex> lock(mu_);
        rejections_.insert(rejections_.begin(), rejections.begin() + i, rejections.end());
      }
    }
    if (!healthy) break;
    bool more = false;
    for (const std::string& job_id : outbox_->jobs()) {
      auto it = sent.find(job_id);
      const int64_t after = it == sent.end() ? outbox_->acked(job_id) : it->second;
      auto pending = outbox_->Pending(job_id, after, options_.batch_size);
      if (pending.empty()) continue;
      v1::WorkerMessage message;
      auto* batch = message.mutable_events();
      batch->set_job_id(job_id);
      batch->set_first_worker_sequence(pending.front().first);
      if (const auto attempt = outbox_->attempt(job_id)) batch->set_attempt(*attempt);
      for (auto& [sequence, event] : pending) *batch->add_events() = std::move(event);
      if (!stream->Write(message)) {
        healthy = false;
        break;
      }
      sent[job_id] = pending.back().first;
      more = more || pending.size() == options_.batch_size;
    }
    bool finish_waits = false;  // for the acknowledgement of its events
    for (const auto& [job_id, finished] : finishes) {
      if (!healthy) break;
      if (outbox_->acked(job_id) < outbox_->last(job_id)) {
        finish_waits = true;
        continue;
      }
      v1::WorkerMessage message;
      *message.mutable_finished() = finished;
      if (!stream->Write(message)) {
        healthy = false;
        break;
      }
      std::lock_guard<std::mutex> lock(mu_);
      finishes_sent_.insert(job_id);
    }
    if (more) Notify();
    // On Stop, a finish waiting for acknowledgements keeps the stream open (Stop cuts it
    // after close_timeout); the reader's Notify wakes this loop for each acknowledgement.
    if (closing && !more && !finish_waits) break;
  }

  if (closing && healthy && stream->WritesDone()) {
    // The scheduler handles every message sent, then ends the stream.
    std::unique_lock<std::mutex> lock(mu_);
    wake_.wait_for(lock, options_.close_timeout, [this] { return stream_broken_; });
  }
  if (reader.joinable()) {
    std::unique_lock<std::mutex> lock(mu_);
    // A failed write means the call is over: the reader is about to see its status.
    if (!healthy && !stopping_) {
      wake_.wait_for(lock, std::chrono::seconds(1), [this] { return stream_broken_; });
    }
    // Cancelling a call that ended would replace the scheduler's status with CANCELLED.
    if (!stream_broken_) context.TryCancel();
  }
  if (reader.joinable()) reader.join();
  const grpc::Status status = stream->Finish();
  bool stopping = false;
  {
    std::lock_guard<std::mutex> lock(mu_);
    context_ = nullptr;
    connected_ = false;
    stopping = stopping_;
  }
  wake_.notify_all();
  if (stopping) return welcomed;
  if (callbacks_.on_session_end) callbacks_.on_session_end(status);
  *refused = status.error_code() == grpc::StatusCode::UNAUTHENTICATED ||
             status.error_code() == grpc::StatusCode::PERMISSION_DENIED;
  if (*refused) {
    spdlog::error(
        "scheduler {} refused this worker: {} (check --token, --token_file or "
        "QUANTD_WORKER_TOKEN); retrying every {} ms",
        options_.scheduler_address, status.error_message(), options_.max_backoff.count());
  } else if (status.error_code() == grpc::StatusCode::ALREADY_EXISTS) {
    // Another worker process has this worker_id: a configuration error, not a network one.
    spdlog::error(
        "scheduler {} refused worker id {}: {} (give every worker its own --worker_id); "
        "retrying with backoff",
        options_.scheduler_address, options_.worker_id, status.error_message());
  } else if (!status.ok()) {
    spdlog::warn("scheduler stream ended: {} ({})", status.error_message(),
                 static_cast<int>(status.error_code()));
  }
  return welcomed;
}

}  // namespace quantd::link
