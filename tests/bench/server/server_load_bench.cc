// Load benchmark of a real quantd on loopback (not a test; prints figures).
//
//   server_load_bench [--submits=2000] [--submit_threads=8] [--workers=8] [--watchers=100]
//                     [--events_per_worker=20000] [--batch=100] [--store_sync=full] [--rate=0]
//
// Phase 1: submits/s (and per-call latency) with concurrent clients, no workers.
// Phase 2, on a fresh quantd: `workers` fake workers each run one job and stream events in
// batches of `batch` (at most `window` unacknowledged batches each) while `watchers` WatchJob
// streams follow the jobs; reports events/s ingested (acknowledged = committed), the
// worker-send -> watcher-receive latency of every delivered event, and quantd's RSS. Unpaced
// (--rate=0) it measures saturation, where latency is mostly queueing; --rate paces each
// worker to measure latency below saturation.
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <fstream>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "server/core/time_util.h"
#include "tests/server/harness.h"

ABSL_FLAG(int, submits, 2000, "jobs submitted in phase 1");
ABSL_FLAG(int, submit_threads, 8, "concurrent submitting clients");
ABSL_FLAG(int, workers, 8, "fake workers in phase 2");
ABSL_FLAG(int, watchers, 100, "WatchJob streams in phase 2");
ABSL_FLAG(int, events_per_worker, 20000, "events each worker sends");
ABSL_FLAG(int, batch, 100, "events per JobEvents message");
ABSL_FLAG(std::string, store_sync, "full", "quantd --store_sync");
ABSL_FLAG(int, window, 8, "unacknowledged event batches each worker may have in flight");
ABSL_FLAG(int, rate, 0, "events/s each worker sends (paced per batch); 0 = as fast as acks allow");

namespace quantd {
namespace {

using testing::FakeWorker;
using testing::QuantdProcess;

double Percentile(std::vector<double> values, double p) {
  if (values.empty()) return 0;
  const size_t index = std::min(values.size() - 1, static_cast<size_t>(p * values.size()));
  std::nth_element(values.begin(), values.begin() + index, values.end());
  return values[index];
}

std::string Dir() {
  const std::string dir = "/tmp/quantd_bench_" + std::to_string(getpid());
  std::string command = "rm -rf " + dir + " && mkdir -p " + dir;
  if (std::system(command.c_str()) != 0) std::abort();
  return dir;
}

std::unique_ptr<QuantdProcess> StartQuantd(const std::string& dir, const std::string& name) {
  auto process = QuantdProcess::Start(
      testing::QuantdBinary(),
      {"--db=" + dir + "/" + name + ".db", "--store_sync=" + absl::GetFlag(FLAGS_store_sync),
       "--watch_buffer=100000", "--log_level=warning", "--shutdown_grace=1s"},
      dir + "/" + name + ".log");
  if (!process.ok()) {
    std::fprintf(stderr, "cannot start quantd: %s\n", process.status().ToString().c_str());
    std::exit(1);
  }
  return std::move(*process);
}

void ReportRss(pid_t pid) {
  std::ifstream status("/proc/" + std::to_string(pid) + "/status");
  std::string line;
  while (std::getline(status, line)) {
    if (line.rfind("VmRSS", 0) == 0 || line.rfind("VmHWM", 0) == 0) {
      std::printf("quantd %s\n", line.c_str());
    }
  }
}

void SubmitPhase(const std::string& dir) {
  auto quantd = StartQuantd(dir, "submit");
  const int total = absl::GetFlag(FLAGS_submits);
  const int threads = absl::GetFlag(FLAGS_submit_threads);
  std::atomic<int> next{0};
  std::atomic<int> failed{0};
  absl::Mutex mu;
  std::vector<double> latencies_ms;
  const absl::Time start = absl::Now();
  std::vector<std::thread> pool;
  for (int t = 0; t < threads; ++t) {
    pool.emplace_back([&] {
      auto channel = grpc::CreateChannel(quantd->address(), grpc::InsecureChannelCredentials());
      auto stub = v1::QuantizeService::NewStub(channel);
      std::vector<double> mine;
      for (int i = next++; i < total; i = next++) {
        v1::SubmitJobRequest request;
        *request.mutable_spec() = testing::MinimalSpec();
        request.set_request_id("bench-" + std::to_string(i));
        v1::SubmitJobResponse response;
        const absl::Time begin = absl::Now();
        if (!stub->SubmitJob(testing::Context("").get(), request, &response).ok()) ++failed;
        mine.push_back(absl::ToDoubleMilliseconds(absl::Now() - begin));
      }
      absl::MutexLock lock(&mu);
      latencies_ms.insert(latencies_ms.end(), mine.begin(), mine.end());
    });
  }
  for (auto& thread : pool) thread.join();
  const double seconds = absl::ToDoubleSeconds(absl::Now() - start);
  std::printf(
      "submits: %d in %.2f s = %.0f submits/s with %d clients (p50 %.2f ms, p99 %.2f ms, "
      "%d failed)\n",
      total, seconds, total / seconds, threads, Percentile(latencies_ms, 0.5),
      Percentile(latencies_ms, 0.99), failed.load());
  ReportRss(quantd->pid());
  quantd->Terminate(absl::Seconds(10));
}

// A WatchJob stream recording the latency of each event it receives.
class LatencyWatcher : public grpc::ClientReadReactor<v1::JobEvent> {
 public:
  LatencyWatcher(v1::QuantizeService::Stub* stub, const std::string& job_id) {
    context_.set_deadline(absl::ToChronoTime(absl::Now() + absl::Minutes(30)));
    request_.set_job_id(job_id);
    stub->async()->WatchJob(&context_, &request_, this);
    StartRead(&event_);
    StartCall();
  }
  void OnReadDone(bool ok) override {
    if (!ok) return;
    if (event_.has_loss()) {
      latencies_ms_.push_back(
          absl::ToDoubleMilliseconds(absl::Now() - FromProtoTime(event_.time())));
    }
    StartRead(&event_);
  }
  void OnDone(const grpc::Status& status) override {
    absl::MutexLock lock(&mu_);
    status_ = status;
    done_ = true;
  }
  grpc::Status Wait() {
    absl::MutexLock lock(&mu_);
    mu_.Await(absl::Condition(&done_));
    return status_;
  }
  const std::vector<double>& latencies() const { return latencies_ms_; }

 private:
  grpc::ClientContext context_;
  v1::WatchJobRequest request_;
  v1::JobEvent event_;
  std::vector<double> latencies_ms_;  // touched by the read chain only, read after Wait()
  absl::Mutex mu_;
  bool done_ ABSL_GUARDED_BY(mu_) = false;
  grpc::Status status_ ABSL_GUARDED_BY(mu_);
};

void EventPhase(const std::string& dir) {
  auto quantd = StartQuantd(dir, "events");
  const int num_workers = absl::GetFlag(FLAGS_workers);
  const int num_watchers = absl::GetFlag(FLAGS_watchers);
  const int per_worker = absl::GetFlag(FLAGS_events_per_worker);
  const int batch = absl::GetFlag(FLAGS_batch);
  const int kWindow = absl::GetFlag(FLAGS_window);

  std::vector<std::unique_ptr<FakeWorker>> workers;
  for (int i = 0; i < num_workers; ++i) {
    workers.push_back(
        std::make_unique<FakeWorker>(quantd->address(), "", "bench-w" + std::to_string(i)));
    workers.back()->Connect();
  }
  auto channel = grpc::CreateChannel(quantd->address(), grpc::InsecureChannelCredentials());
  auto stub = v1::QuantizeService::NewStub(channel);
  std::vector<std::string> job_of(num_workers);
  for (int i = 0; i < num_workers; ++i) {
    v1::SubmitJobRequest request;
    *request.mutable_spec() = testing::MinimalSpec();
    v1::SubmitJobResponse response;
    if (!stub->SubmitJob(testing::Context("").get(), request, &response).ok()) std::exit(1);
  }
  for (int i = 0; i < num_workers; ++i) {
    auto assignment = workers[i]->TakeAssignment(absl::Seconds(30));
    if (!assignment) {
      std::fprintf(stderr, "worker %d got no job\n", i);
      std::exit(1);
    }
    job_of[i] = assignment->job().job_id();
  }
  std::vector<std::shared_ptr<grpc::Channel>> watch_channels;
  std::vector<std::unique_ptr<v1::QuantizeService::Stub>> watch_stubs;
  for (int i = 0; i < 4; ++i) {
    grpc::ChannelArguments args;
    args.SetInt("bench_channel", i);  // distinct channels, not one shared connection
    watch_channels.push_back(
        grpc::CreateCustomChannel(quantd->address(), grpc::InsecureChannelCredentials(), args));
    watch_stubs.push_back(v1::QuantizeService::NewStub(watch_channels.back()));
  }
  std::vector<std::unique_ptr<LatencyWatcher>> watchers;
  for (int i = 0; i < num_watchers; ++i) {
    watchers.push_back(
        std::make_unique<LatencyWatcher>(watch_stubs[i % 4].get(), job_of[i % num_workers]));
  }

  const absl::Time start = absl::Now();
  std::vector<std::thread> senders;
  for (int w = 0; w < num_workers; ++w) {
    senders.emplace_back([&, w] {
      FakeWorker& worker = *workers[w];
      const std::string& job = job_of[w];
      int64_t sent = 0;
      int64_t batches = 0;
      const int rate = absl::GetFlag(FLAGS_rate);
      const absl::Time begin = absl::Now();
      while (sent < per_worker) {
        if (rate > 0) {
          // A load generator's pacing: the next batch is due at sent / rate seconds.
          const absl::Time due = begin + absl::Seconds(static_cast<double>(sent) / rate);
          const absl::Time now = absl::Now();
          if (due > now) absl::SleepFor(due - now);
        }
        if (batches >= kWindow) {
          // Wait for the ack of the batch kWindow back before sending more.
          const int64_t need = sent - static_cast<int64_t>(kWindow - 1) * batch;
          if (!worker.WaitAck(job, need, absl::Seconds(60))) {
            std::fprintf(stderr, "worker %d: no ack for %ld\n", w, static_cast<long>(need));
            return;
          }
        }
        const int count = static_cast<int>(std::min<int64_t>(batch, per_worker - sent));
        const absl::Time now = absl::Now();
        worker.SendEvents(job, sent + 1, count, [&](int64_t sequence, v1::JobEvent* event) {
          ToProtoTime(now, event->mutable_time());
          event->mutable_loss()->set_step(sequence);
          event->mutable_loss()->set_loss(1.0 / sequence);
        });
        sent += count;
        ++batches;
      }
      worker.WaitAck(job, per_worker, absl::Seconds(120));
    });
  }
  for (auto& thread : senders) thread.join();
  const double ingest_seconds = absl::ToDoubleSeconds(absl::Now() - start);
  for (int w = 0; w < num_workers; ++w) {
    workers[w]->SendFinished(job_of[w], v1::JOB_STATE_SUCCEEDED);
  }
  int exhausted = 0;
  int other_errors = 0;
  std::vector<double> latencies;
  for (auto& watcher : watchers) {
    grpc::Status status = watcher->Wait();
    if (status.error_code() == grpc::StatusCode::RESOURCE_EXHAUSTED)
      ++exhausted;
    else if (!status.ok())
      ++other_errors;
    latencies.insert(latencies.end(), watcher->latencies().begin(), watcher->latencies().end());
  }
  const double delivered_seconds = absl::ToDoubleSeconds(absl::Now() - start);
  const int64_t total = static_cast<int64_t>(per_worker) * num_workers;
  std::printf(
      "events: %ld from %d workers in %.2f s = %.0f events/s ingested (acknowledged) "
      "with %d watchers%s\n",
      static_cast<long>(total), num_workers, ingest_seconds, total / ingest_seconds, num_watchers,
      absl::GetFlag(FLAGS_rate) > 0
          ? (" (paced at " + std::to_string(absl::GetFlag(FLAGS_rate)) + "/s per worker)").c_str()
          : " (unpaced)");
  std::printf(
      "watchers: %zu deliveries in %.2f s = %.0f events/s delivered; "
      "%d ended RESOURCE_EXHAUSTED, %d other errors\n",
      latencies.size(), delivered_seconds, latencies.size() / delivered_seconds, exhausted,
      other_errors);
  std::printf("event latency worker send -> watcher receive: p50 %.2f ms, p99 %.2f ms\n",
              Percentile(latencies, 0.5), Percentile(latencies, 0.99));
  ReportRss(quantd->pid());
  watchers.clear();
  workers.clear();
  quantd->Terminate(absl::Seconds(10));
}

}  // namespace
}  // namespace quantd

int main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  std::setvbuf(stdout, nullptr, _IOLBF, 0);
  const std::string dir = quantd::Dir();
  quantd::SubmitPhase(dir);
  quantd::EventPhase(dir);
  std::string command = "rm -rf " + dir;
  return std::system(command.c_str()) == 0 ? 0 : 1;
}
