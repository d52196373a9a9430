// quantd: the scheduler process. Flags (or --flagfile=quantd.flags) configure everything;
// see server/README.md. Prints "quantd ready port=<p> metrics_port=<m>" on stdout once
// it serves, and shuts down gracefully on SIGTERM or SIGINT.
#include <signal.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <sstream>
#include <string>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/flags/usage_config.h"
#include "absl/strings/match.h"
#include "absl/time/time.h"
#include "proto/common/logging.h"
#include "proto/common/version.h"
#include "server/rpc/server.h"
#include "spdlog/spdlog.h"

ABSL_FLAG(std::string, listen, "127.0.0.1:7070", "gRPC address host:port (port 0 = any)");
ABSL_FLAG(std::string, db, "quantd.db", "SQLite database file");
ABSL_FLAG(std::string, store_sync, "full",
          "full: fsync every commit; normal: durable across process crashes only");
ABSL_FLAG(std::string, tokens_file, "",
          "bearer tokens: lines of '<token> <name> user|admin|worker'");
ABSL_FLAG(bool, insecure_no_auth, false,
          "allow running without --tokens_file on a non-loopback address");
ABSL_FLAG(std::string, tls_cert, "", "PEM certificate file (with --tls_key)");
ABSL_FLAG(std::string, tls_key, "", "PEM private key file (with --tls_cert)");
ABSL_FLAG(std::string, metrics_listen, "127.0.0.1:9464",
          "host:port of the Prometheus /metrics endpoint; empty = off");
ABSL_FLAG(int, max_running_per_owner, 0, "jobs one owner may run at once; 0 = no limit");
ABSL_FLAG(int, max_requeues, 3, "worker losses after which a job fails with WORKER_LOST");
ABSL_FLAG(absl::Duration, heartbeat_interval, absl::Seconds(5), "heartbeat period of workers");
ABSL_FLAG(absl::Duration, worker_lost_after, absl::ZeroDuration(),
          "a worker silent this long is lost and its jobs are requeued; 0 = 3 heartbeats");
ABSL_FLAG(absl::Duration, reattach_grace, absl::Seconds(60),
          "after a restart, how long running jobs wait for their worker");
ABSL_FLAG(int, watch_buffer, 4096, "live events a watcher may have pending");
ABSL_FLAG(int, max_request_bytes, 16 << 20, "largest request accepted");
ABSL_FLAG(absl::Duration, shutdown_grace, absl::Seconds(5),
          "on SIGTERM, how long open calls get to finish");
ABSL_FLAG(std::string, log_format, "text", "text or json");
ABSL_FLAG(std::string, log_level, "info", "trace, debug, info, warning or error");

namespace {

int g_signal_pipe[2] = {-1, -1};

void OnSignal(int signal_number) {
  const unsigned char byte = static_cast<unsigned char>(signal_number);
  const int saved_errno = errno;
  (void)!write(g_signal_pipe[1], &byte, 1);
  errno = saved_errno;
}

bool IsLoopback(const std::string& address) {
  const size_t colon = address.rfind(':');
  const std::string host = colon == std::string::npos ? address : address.substr(0, colon);
  return host == "localhost" || host == "[::1]" || absl::StartsWith(host, "127.");
}

bool ReadFile(const std::string& path, std::string* out) {
  std::ifstream in(path);
  if (!in) return false;
  std::stringstream text;
  text << in.rdbuf();
  *out = text.str();
  return true;
}

int Fail(const std::string& message) {
  spdlog::critical("{}", message);
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage("quantd: the PrefixQuant job scheduler. See server/README.md.");
  absl::FlagsUsageConfig usage;
  usage.version_string = [] { return "quantd " + quantd::VersionString() + "\n"; };
  // --help lists the flags defined in this file (absl's default looks for a file named after
  // the program, e.g. quantd.cc).
  usage.contains_help_flags = [](absl::string_view file) {
    return absl::EndsWith(file, "server/main.cc");
  };
  usage.contains_helpshort_flags = usage.contains_help_flags;
  absl::SetFlagsUsageConfig(usage);
  absl::ParseCommandLine(argc, argv);

  quantd::LogFormat format;
  if (auto status = quantd::ParseLogFormat(absl::GetFlag(FLAGS_log_format), &format);
      !status.ok()) {
    std::cerr << "--log_format: " << status.message() << "\n";
    return 2;
  }
  if (auto status = quantd::InitLogging("quantd", format, absl::GetFlag(FLAGS_log_level));
      !status.ok()) {
    std::cerr << "--log_level: " << status.message() << "\n";
    return 2;
  }

  quantd::ServerOptions options;
  options.listen_address = absl::GetFlag(FLAGS_listen);
  options.db_path = absl::GetFlag(FLAGS_db);
  const std::string sync = absl::GetFlag(FLAGS_store_sync);
  if (sync != "full" && sync != "normal") return Fail("--store_sync must be full or normal");
  options.store_sync_full = sync == "full";
  const std::string tokens_file = absl::GetFlag(FLAGS_tokens_file);
  if (!tokens_file.empty()) {
    auto tokens = quantd::TokenTable::LoadFile(tokens_file);
    if (!tokens.ok()) return Fail("--tokens_file: " + tokens.status().ToString());
    options.tokens = std::move(*tokens);
  } else if (!IsLoopback(options.listen_address) && !absl::GetFlag(FLAGS_insecure_no_auth)) {
    return Fail(
        "--tokens_file is required unless quantd listens on loopback only "
        "(or pass --insecure_no_auth)");
  } else {
    spdlog::warn("authentication is off (no --tokens_file)");
  }
  const std::string cert = absl::GetFlag(FLAGS_tls_cert);
  const std::string key = absl::GetFlag(FLAGS_tls_key);
  if (!cert.empty() && !ReadFile(cert, &options.tls_cert_pem)) return Fail("cannot read " + cert);
  if (!key.empty() && !ReadFile(key, &options.tls_key_pem)) return Fail("cannot read " + key);
  options.metrics_address = absl::GetFlag(FLAGS_metrics_listen);
  if (absl::GetFlag(FLAGS_watch_buffer) < 1) return Fail("--watch_buffer must be >= 1");
  options.watch_buffer = static_cast<size_t>(absl::GetFlag(FLAGS_watch_buffer));
  options.max_receive_message_bytes = absl::GetFlag(FLAGS_max_request_bytes);
  options.scheduler.max_running_per_owner = absl::GetFlag(FLAGS_max_running_per_owner);
  options.scheduler.max_requeues = absl::GetFlag(FLAGS_max_requeues);
  if (options.scheduler.max_running_per_owner < 0 || options.scheduler.max_requeues < 0) {
    return Fail("--max_running_per_owner and --max_requeues must be >= 0");
  }
  options.scheduler.heartbeat_interval = absl::GetFlag(FLAGS_heartbeat_interval);
  options.scheduler.worker_lost_after = absl::GetFlag(FLAGS_worker_lost_after);
  if (options.scheduler.worker_lost_after <= absl::ZeroDuration()) {
    options.scheduler.worker_lost_after = 3 * options.scheduler.heartbeat_interval;
  }
  if (options.scheduler.heartbeat_interval < absl::Seconds(1)) {
    return Fail("--heartbeat_interval must be at least 1s (Welcome carries whole seconds)");
  }
  options.scheduler.reattach_grace = absl::GetFlag(FLAGS_reattach_grace);
  options.scheduler.on_store_failure = [db = options.db_path](const absl::Status& status) {
    spdlog::critical("{}", quantd::StoreFailureMessage(status, db));
    spdlog::default_logger()->flush();
    std::abort();
  };

  // SIGTERM/SIGINT may land on any thread (gRPC starts some before main): the handler only
  // writes the signal number to a pipe that the main thread waits on.
  if (pipe(g_signal_pipe) != 0) return Fail("pipe() failed");
  struct sigaction action = {};
  action.sa_handler = OnSignal;
  sigemptyset(&action.sa_mask);
  sigaction(SIGTERM, &action, nullptr);
  sigaction(SIGINT, &action, nullptr);

  auto server = quantd::QuantdServer::Start(std::move(options));
  if (!server.ok()) return Fail(server.status().ToString());
  spdlog::info("quantd {} ready", quantd::VersionString());
  std::printf("quantd ready port=%d metrics_port=%d\n", (*server)->port(),
              (*server)->metrics_port());
  std::fflush(stdout);

  unsigned char signal_number = 0;
  while (read(g_signal_pipe[0], &signal_number, 1) < 0 && errno == EINTR) {
  }
  spdlog::info("signal {}: shutting down", static_cast<int>(signal_number));
  (*server)->Shutdown(absl::GetFlag(FLAGS_shutdown_grace));
  server->reset();
  spdlog::info("quantd stopped");
  return 0;
}
