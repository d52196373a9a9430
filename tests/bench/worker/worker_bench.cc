// What the worker adds on the way from a job to a watcher, measured on this machine:
//   1. the event pipe: a real child process writing N framed events to its worker,
//      against serializing and parsing the same events in one process (the floor);
//   2. the Connect stream: N events through SchedulerLink to a scheduler that stores
//      nothing and acknowledges every batch (loopback gRPC);
//   3. start latency: real quantd + quantd-worker, from SubmitJob to ASSIGNED and to the
//      job process's first event (fork + exec + process start-up), median of K jobs.
// Usage: worker_bench [--events N] [--jobs K]
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <future>
#include <string>
#include <vector>

#include "google/protobuf/util/time_util.h"
#include "grpcpp/grpcpp.h"
#include "quantd/v1/quantize_service.grpc.pb.h"
#include "tests/e2e/processes.h"
#include "worker/link/event_outbox.h"
#include "worker/link/scheduler_link.h"
#include "worker/runner/event_pipe.h"
#include "worker/runner/job_process.h"

namespace {

using Clock = std::chrono::steady_clock;
using namespace std::chrono_literals;

double Seconds(Clock::duration d) { return std::chrono::duration<double>(d).count(); }

quantd::v1::JobEvent Progress(int i) {
  quantd::v1::JobEvent event;
  event.mutable_progress()->set_fraction(i * 1e-6);
  return event;
}

void PipeBench(int events) {
  // Floor: the same framing and parsing without a process boundary.
  const auto floor_start = Clock::now();
  std::string stream;
  for (int i = 1; i <= events; ++i) quantd::runner::AppendFramedEvent(Progress(i), &stream);
  quantd::runner::EventPipeReader reader;
  std::vector<quantd::v1::JobEvent> parsed;
  (void)reader.Feed(stream.data(), stream.size(), &parsed);
  const double floor = Seconds(Clock::now() - floor_start);

  quantd::runner::JobProcessOptions options;
  options.argv = {FAKE_JOB_PATH, "succeed", std::to_string(events)};
  options.log_path = "/tmp/worker_bench_fake_job.log";
  const auto start = Clock::now();
  auto process = quantd::runner::JobProcess::Start(options);
  if (!process.ok()) {
    std::printf("pipe: cannot start the fake job: %s\n", process.status().ToString().c_str());
    return;
  }
  int64_t received = 0;
  (*process)->Run([&](quantd::v1::JobEvent) { ++received; });
  const double piped = Seconds(Clock::now() - start);
  std::printf(
      "event pipe:     %lld events in %.3f s = %.0f events/s, %.2f us/event "
      "(in-process floor %.2f us/event; ratio %.1fx)\n",
      static_cast<long long>(received), piped, received / piped, 1e6 * piped / received,
      1e6 * floor / events, piped / floor);
}

class AckingScheduler final : public quantd::v1::WorkerService::Service {
 public:
  grpc::Status Connect(grpc::ServerContext*,
                       grpc::ServerReaderWriter<quantd::v1::SchedulerMessage,
                                                quantd::v1::WorkerMessage>* stream) override {
    quantd::v1::WorkerMessage message;
    if (!stream->Read(&message)) return grpc::Status::OK;
    quantd::v1::SchedulerMessage welcome;
    welcome.mutable_welcome()->set_heartbeat_interval_seconds(5);
    stream->Write(welcome);
    while (stream->Read(&message)) {
      if (!message.has_events()) continue;
      quantd::v1::SchedulerMessage ack;
      ack.mutable_ack()->set_job_id(message.events().job_id());
      ack.mutable_ack()->set_worker_sequence(message.events().first_worker_sequence() +
                                             message.events().events_size() - 1);
      stream->Write(ack);
    }
    return grpc::Status::OK;
  }
};

void ConnectBench(int events) {
  AckingScheduler scheduler;
  int port = 0;
  grpc::ServerBuilder builder;
  builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port);
  builder.RegisterService(&scheduler);
  auto server = builder.BuildAndStart();
  quantd::link::EventOutbox outbox(static_cast<size_t>(events) + 1, "/tmp/worker_bench_outbox");
  quantd::link::LinkOptions options;
  options.scheduler_address = "127.0.0.1:" + std::to_string(port);
  options.worker_id = "bench";
  quantd::link::SchedulerLink link(options, {}, &outbox);
  link.Start();
  while (!link.connected()) std::this_thread::sleep_for(1ms);
  const auto start = Clock::now();
  for (int i = 1; i <= events; ++i) {
    outbox.Add("j-bench", Progress(i));
    if (i % 512 == 0) link.Notify();
  }
  link.Notify();
  while (outbox.acked("j-bench") < events) std::this_thread::sleep_for(1ms);
  const double elapsed = Seconds(Clock::now() - start);
  link.Stop();
  server->Shutdown();
  std::printf("connect stream: %d events acknowledged in %.3f s = %.0f events/s, %.2f us/event\n",
              events, elapsed, events / elapsed, 1e6 * elapsed / events);
}

void StartLatencyBench(int jobs) {
  const std::string dir = "/tmp/worker_bench_start";
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  const std::string bin = QUANTD_BINARY_DIR;
  auto scheduler =
      quantd::e2e::Process::Start({bin + "/server/quantd", "--listen=127.0.0.1:0",
                                   "--metrics_listen=127.0.0.1:0", "--db=" + dir + "/q.db"},
                                  dir + "/quantd.log");
  const auto port = scheduler.ok()
                        ? quantd::e2e::WaitForOutput(**scheduler, "ready port=([0-9]+)", 20s)
                        : std::nullopt;
  if (!port.has_value()) {
    std::printf("start latency: quantd did not start\n");
    return;
  }
  const std::string address = "127.0.0.1:" + *port;
  auto worker = quantd::e2e::Process::Start(
      {bin + "/worker/quantd-worker", "connect", "--scheduler=" + address,
       "--work_dir=" + dir + "/work", "--metrics_listen=127.0.0.1:0"},
      dir + "/worker.log");
  auto stub = quantd::v1::QuantizeService::NewStub(
      grpc::CreateChannel(address, grpc::InsecureChannelCredentials()));
  std::vector<double> to_assigned, to_first_event;
  for (int k = 0; k < jobs; ++k) {
    quantd::v1::SubmitJobRequest request;
    auto* spec = request.mutable_spec();
    spec->mutable_model()->set_path(std::string(QUANTD_SHARED_DATA) + "/models/stories260K");
    spec->mutable_calibration()->set_dataset_path(std::string(QUANTD_SHARED_DATA) +
                                                  "/text/tinystories-valid-subset.txt");
    spec->mutable_eval()->set_eval_ppl(true);
    spec->mutable_eval()->set_ppl_seqlen(256);
    spec->mutable_eval()->set_ppl_max_windows(1);
    grpc::ClientContext submit_context;
    quantd::v1::SubmitJobResponse response;
    if (!stub->SubmitJob(&submit_context, request, &response).ok()) continue;
    const auto submitted = response.job().create_time();
    grpc::ClientContext watch_context;
    quantd::v1::WatchJobRequest watch;
    watch.set_job_id(response.job().job_id());
    auto reader = stub->WatchJob(&watch_context, watch);
    quantd::v1::JobEvent event;
    bool assigned = false, first = false;
    while (reader->Read(&event)) {
      const double after =
          google::protobuf::util::TimeUtil::DurationToMicroseconds(event.time() - submitted) / 1e3;
      if (!assigned && event.has_state_change() &&
          event.state_change().to() == quantd::v1::JOB_STATE_ASSIGNED) {
        to_assigned.push_back(after);
        assigned = true;
      }
      if (!first && event.has_phase_change()) {  // the job process's first event
        to_first_event.push_back(after);
        first = true;
      }
    }
    reader->Finish();
  }
  auto median = [](std::vector<double> v) {
    if (v.empty()) return -1.0;
    std::sort(v.begin(), v.end());
    return v[v.size() / 2];
  };
  std::printf(
      "start latency:  submit -> ASSIGNED median %.1f ms; submit -> first event of the "
      "job process median %.1f ms (%zu jobs)\n",
      median(to_assigned), median(to_first_event), to_first_event.size());
}

}  // namespace

int main(int argc, char** argv) {
  int events = 200000, jobs = 5;
  for (int i = 1; i + 1 < argc; i += 2) {
    if (std::strcmp(argv[i], "--events") == 0) events = std::atoi(argv[i + 1]);
    if (std::strcmp(argv[i], "--jobs") == 0) jobs = std::atoi(argv[i + 1]);
  }
  PipeBench(events);
  ConnectBench(events);
  StartLatencyBench(jobs);
  return 0;
}
