#include "worker/service/commands.h"

#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <map>
#include <sstream>
#include <thread>

#include "absl/strings/numbers.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "client/format/event_format.h"
#include "proto/common/args.h"
#include "proto/common/logging.h"
#include "proto/common/version.h"
#include "proto/spec/defaults.h"
#include "proto/spec/spec_file.h"
#include "proto/spec/validate.h"
#include "quantd/v1/worker_service.pb.h"
#include "spdlog/spdlog.h"
#include "worker/daemon/worker_daemon.h"
#include "worker/link/devices.h"
#include "worker/pipeline/job_device.h"
#include "worker/pipeline/run_job.h"
#include "worker/runner/child_side.h"
#include "worker/runner/job_process.h"

namespace quantd::service {
namespace {

constexpr char kUsage[] =
    R"(  connect --scheduler HOST:PORT [--token TOKEN | --token_file FILE] [--worker_id ID]
          [--devices 0,1] [--work_dir DIR] [--max_jobs N] [--ca_cert FILE]
          [--cancel_grace_seconds S] [--metrics_listen HOST:PORT (default 127.0.0.1:9465;
          "" = off)] [--log_format text|json]
      run as a worker: connect to quantd and run the jobs it assigns, each in a child process
  run --spec JOB.yaml [--set path=value ...] [--work_dir DIR] [--output text|json]
      [--device auto|cpu|cuda|cuda:N]
      run one job in this process without a scheduler; exit 0 succeeded, 1 failed,
      2 cancelled (Ctrl-C), 65 invalid spec; training checkpoints go to DIR/train (DIR
      defaults to .), and a rerun of the same spec with the same DIR resumes from them
  exec-job --job FILE --work_dir DIR --event_fd N
      the job process started by `connect` (not for direct use)
)";

// --help (or -h) anywhere: the usage on stdout, exit 0.
bool PrintedHelp(const std::vector<std::string>& argv) {
  for (const std::string& word : argv) {
    if (word == "--help" || word == "-h") {
      std::fputs(kUsage, stdout);
      return true;
    }
  }
  return false;
}

int Usage(const absl::Status& status) {
  std::fprintf(stderr, "quantd-worker: %s\n\n%s", std::string(status.message()).c_str(), kUsage);
  return 64;
}

std::atomic<bool> g_stop{false};
extern "C" void StopOnSignal(int) { g_stop = true; }

std::string Hostname() {
  char name[256] = {};
  ::gethostname(name, sizeof(name) - 1);
  return name;
}

// Prints events as they happen: plain lines (a phase line ends with the seconds since the
// start, so a run's log shows where its time went) or JSON lines.
class ConsoleSink : public EventSink {
 public:
  explicit ConsoleSink(bool json) : json_(json) {}
  absl::Status Emit(const v1::JobEvent& original) override {
    v1::JobEvent event = original;
    event.set_sequence(++sequence_);
    if (json_) {
      std::cout << ToJson(event, /*pretty=*/false) << std::endl;
      return absl::OkStatus();
    }
    std::cout << format::FormatEventLine(event);
    if (event.has_phase_change()) {
      const std::chrono::duration<double> elapsed = std::chrono::steady_clock::now() - start_;
      std::cout << absl::StrFormat("  [%.1f s]", elapsed.count());
    }
    std::cout << std::endl;
    return absl::OkStatus();
  }

 private:
  bool json_;
  int64_t sequence_ = 0;
  const std::chrono::steady_clock::time_point start_ = std::chrono::steady_clock::now();
};

// Test hooks of the job process, read from the environment (tests of job isolation):
//   QUANTD_TEST_EVENT_DELAY_MS=N       sleep N ms after every event (a slow job)
//   QUANTD_TEST_CRASH_AFTER_EVENTS=N   die with SIGSEGV after N events (a crashing job)
class TestHookSink : public EventSink {
 public:
  explicit TestHookSink(EventSink& inner) : inner_(inner) {
    if (const char* delay = std::getenv("QUANTD_TEST_EVENT_DELAY_MS")) {
      (void)absl::SimpleAtoi(delay, &delay_ms_);
    }
    if (const char* crash = std::getenv("QUANTD_TEST_CRASH_AFTER_EVENTS")) {
      (void)absl::SimpleAtoi(crash, &crash_after_);
    }
  }
  absl::Status Emit(const v1::JobEvent& event) override {
    const absl::Status status = inner_.Emit(event);
    if (crash_after_ > 0 && ++emitted_ >= crash_after_) {
      std::fprintf(stderr, "test hook: crashing after %d events\n", emitted_);
      std::fflush(stderr);
      ::raise(SIGSEGV);
    }
    if (delay_ms_ > 0) std::this_thread::sleep_for(std::chrono::milliseconds(delay_ms_));
    return status;
  }

 private:
  EventSink& inner_;
  int delay_ms_ = 0;
  int crash_after_ = 0;
  int emitted_ = 0;
};

}  // namespace

const char* ServiceCommandsUsage() { return kUsage; }

int RunConnectCommand(const std::string& self, const std::vector<std::string>& argv) {
  if (PrintedHelp(argv)) return 0;
  auto args = Args::Parse(
      argv,
      {"scheduler", "token", "token_file", "worker_id", "devices", "work_dir", "max_jobs",
       "ca_cert", "cancel_grace_seconds", "log_format", "log_level", "metrics_listen"},
      {});
  if (!args.ok()) return Usage(args.status());
  if (!args->positional().empty()) {
    return Usage(absl::InvalidArgumentError("unexpected argument " + args->positional()[0]));
  }
  LogFormat log_format;
  if (auto s = ParseLogFormat(args->Get("log_format", "text"), &log_format); !s.ok()) {
    return Usage(s);
  }
  if (auto s = InitLogging("quantd-worker", log_format, args->Get("log_level", "info")); !s.ok()) {
    return Usage(s);
  }
  if (!args->Has("scheduler")) return Usage(absl::InvalidArgumentError("--scheduler is required"));

  const std::string pinned = args->Get("devices");
  auto devices = link::DiscoverDevices(pinned);
  if (!devices.ok()) {
    spdlog::error("{}", devices.status().ToString());
    return 66;
  }
  daemon::DaemonOptions options;
  options.link.scheduler_address = args->Get("scheduler");
  options.link.token = args->Get("token");
  if (args->Has("token_file")) {
    std::ifstream in(args->Get("token_file"));
    if (!in) {
      spdlog::error("cannot read --token_file {}", args->Get("token_file"));
      return 66;
    }
    std::getline(in, options.link.token);
  }
  if (options.link.token.empty()) {
    if (const char* token = std::getenv("QUANTD_WORKER_TOKEN")) options.link.token = token;
  }
  options.link.ca_cert_path = args->Get("ca_cert");
  options.link.hostname = Hostname();
  options.link.worker_id =
      args->Get("worker_id", options.link.hostname + "-" + (pinned.empty() ? "all" : pinned));
  options.link.version = VersionString();
  if (!absl::SimpleAtoi(args->Get("max_jobs", "1"), &options.link.max_jobs) ||
      options.link.max_jobs < 1) {
    return Usage(absl::InvalidArgumentError("--max_jobs must be a positive integer"));
  }
  options.link.devices = [pinned, fallback = *devices] {
    auto fresh = link::DiscoverDevices(pinned);
    return fresh.ok() ? *fresh : fallback;
  };
  double grace = 10;
  if (!absl::SimpleAtod(args->Get("cancel_grace_seconds", "10"), &grace) || grace < 0) {
    return Usage(absl::InvalidArgumentError("--cancel_grace_seconds must be >= 0"));
  }
  options.cancel_grace = std::chrono::milliseconds(static_cast<int64_t>(grace * 1000));
  options.work_dir = args->Get("work_dir", "quantd-worker-jobs");
  options.job_command = {self, "exec-job"};
  options.metrics_address = args->Get("metrics_listen", "127.0.0.1:9465");

  struct sigaction action = {};
  action.sa_handler = StopOnSignal;
  sigemptyset(&action.sa_mask);
  sigaction(SIGTERM, &action, nullptr);
  sigaction(SIGINT, &action, nullptr);
  signal(SIGPIPE, SIG_IGN);

  spdlog::info("quantd-worker {} as {} with {} device(s), scheduler {}", VersionString(),
               options.link.worker_id, devices->size(), options.link.scheduler_address);
  daemon::WorkerDaemon worker(options);
  if (auto status = worker.Start(); !status.ok()) {
    spdlog::error("{}", status.ToString());
    return 69;
  }
  if (worker.metrics().port() > 0) {
    spdlog::info("metrics on http://{}/metrics (port {})", options.metrics_address,
                 worker.metrics().port());
  }
  while (!g_stop) std::this_thread::sleep_for(std::chrono::milliseconds(100));
  spdlog::info("stopping: cancelling {} running job(s)", worker.running_jobs());
  worker.Stop();
  return 0;
}

int RunExecJobCommand(const std::vector<std::string>& argv) {
  auto args = Args::Parse(argv, {"job", "work_dir", "event_fd"}, {});
  if (!args.ok()) return Usage(args.status());
  int event_fd = -1;
  if (!absl::SimpleAtoi(args->Get("event_fd"), &event_fd) || event_fd < 0) {
    return Usage(absl::InvalidArgumentError("--event_fd is required"));
  }
  (void)InitLogging("quantd-job", LogFormat::kText, "info");
  runner::PipeEventSink pipe_sink(event_fd);
  TestHookSink sink(pipe_sink);
  CancellationToken cancel;
  runner::CancelOnTermination(&cancel);

  std::ifstream in(args->Get("job"), std::ios::binary);
  v1::Assignment assignment;
  if (!in || !assignment.ParseFromIstream(&in)) {
    return runner::ReportFailureAndExitCode(sink, v1::FAILURE_REASON_INTERNAL,
                                            "cannot read the job file " + args->Get("job"));
  }
  // Only the assigned GPUs are visible to the job; LibTorch reads this at its first CUDA call.
  const std::vector<std::string> device_ids(assignment.device_ids().begin(),
                                            assignment.device_ids().end());
  if (auto visible = pipeline::VisibleDevicesFor(device_ids)) {
    ::setenv("CUDA_VISIBLE_DEVICES", visible->c_str(), /*overwrite=*/1);
  }
  pipeline::RunJobOptions options;
  options.work_dir = args->Get("work_dir", ".");
  spdlog::info("job {} starting on device(s) [{}]", assignment.job().job_id(),
               absl::StrJoin(device_ids, ","));
  const pipeline::RunJobOutcome outcome =
      pipeline::RunJob(assignment.job().spec(), options, sink, cancel);
  if (outcome.reason == v1::FAILURE_REASON_CANCELLED || cancel.cancelled()) {
    spdlog::info("job cancelled");
    return runner::kChildCancelled;
  }
  if (!outcome.status.ok()) {
    spdlog::error("job failed: {}", outcome.status.ToString());
    return runner::ReportFailureAndExitCode(sink, outcome.reason,
                                            std::string(outcome.status.message()));
  }
  v1::JobEvent result;
  *result.mutable_result() = outcome.result;
  if (!sink.Emit(result).ok()) return runner::kChildFailed;
  return runner::kChildSucceeded;
}

int RunLocalCommand(const std::vector<std::string>& argv) {
  if (PrintedHelp(argv)) return 0;
  auto args = Args::Parse(argv, {"spec", "set", "work_dir", "output", "device"}, {});
  if (!args.ok()) return Usage(args.status());
  if (!args->Has("spec")) return Usage(absl::InvalidArgumentError("--spec is required"));
  const std::string output = args->Get("output", "text");
  if (output != "text" && output != "json") {
    return Usage(absl::InvalidArgumentError("--output must be text or json"));
  }
  auto spec = LoadSpecFile(args->Get("spec"));
  if (!spec.ok()) {
    std::fprintf(stderr, "quantd-worker: %s\n", std::string(spec.status().message()).c_str());
    return spec.status().code() == absl::StatusCode::kNotFound ? 66 : 65;
  }
  if (auto s = ApplyOverrides(args->GetAll("set"), &*spec); !s.ok()) {
    std::fprintf(stderr, "quantd-worker: %s\n", std::string(s.message()).c_str());
    return 65;
  }
  ApplyDefaults(&*spec);
  if (auto s = ValidateSpec(*spec); !s.ok()) {
    std::fprintf(stderr, "quantd-worker: %s\n", std::string(s.message()).c_str());
    return 65;
  }
  (void)InitLogging("quantd-worker", LogFormat::kText, "warning");
  static CancellationToken cancel;
  runner::CancelOnTermination(&cancel);
  ConsoleSink sink(output == "json");
  pipeline::RunJobOptions options;
  options.work_dir = args->Get("work_dir", ".");
  options.device = args->Get("device", "auto");
  const pipeline::RunJobOutcome outcome = pipeline::RunJob(*spec, options, sink, cancel);
  if (outcome.reason == v1::FAILURE_REASON_CANCELLED) {
    std::fprintf(stderr, "quantd-worker: cancelled\n");
    return 2;
  }
  if (!outcome.status.ok()) {
    std::fprintf(stderr, "quantd-worker: job failed (%s): %s\n",
                 format::ShortName(outcome.reason).c_str(),
                 std::string(outcome.status.message()).c_str());
    return 1;
  }
  v1::JobEvent result;
  *result.mutable_result() = outcome.result;
  (void)sink.Emit(result);
  if (output == "text") {  // JSON output stays JSON Lines: the result event holds the metrics
    const std::map<std::string, double> sorted(outcome.result.metrics().begin(),
                                               outcome.result.metrics().end());
    for (const auto& [name, value] : sorted) std::printf("%-40s %12.4f\n", name.c_str(), value);
  }
  return 0;
}

}  // namespace quantd::service
