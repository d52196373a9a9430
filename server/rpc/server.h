// QuantdServer: the whole scheduler process minus flag parsing — SQLite store, scheduler,
// event bus, gRPC services (QuantizeService, WorkerService, health, reflection), metrics
// endpoint and the timer that loses silent workers.
//
// Start() recovers the state from the store and listens; Shutdown() marks the health
// service NOT_SERVING, stops accepting calls, gives open calls `grace` to finish, then
// cancels the rest and closes the store (which commits what is queued). Thread-safe.
#ifndef QUANTD_SERVER_RPC_SERVER_H_
#define QUANTD_SERVER_RPC_SERVER_H_

#include <atomic>
#include <memory>
#include <optional>
#include <string>
#include <thread>

#include "absl/status/statusor.h"
#include "absl/synchronization/notification.h"
#include "absl/time/time.h"
#include "grpcpp/server.h"
#include "server/core/event_bus.h"
#include "server/core/scheduler.h"
#include "server/metrics/metrics.h"
#include "server/rpc/auth.h"
#include "server/rpc/quantize_service.h"
#include "server/rpc/worker_service.h"
#include "server/store/sqlite_store.h"

namespace quantd {

struct ServerOptions {
  // host:port for gRPC; port 0 picks a free port (see QuantdServer::port()).
  std::string listen_address = "127.0.0.1:7070";
  // SQLite database file.
  std::string db_path = "quantd.db";
  bool store_sync_full = true;
  // Tokens file (see auth.h); nullopt = authentication off.
  std::optional<TokenTable> tokens;
  // TLS: both or neither (PEM files' contents).
  std::string tls_cert_pem;
  std::string tls_key_pem;
  // host:port of the /metrics HTTP endpoint; empty = none.
  std::string metrics_address;
  // Live events one watcher may have pending.
  size_t watch_buffer = 4096;
  // Largest request accepted, in bytes.
  int max_receive_message_bytes = 16 << 20;
  SchedulerOptions scheduler;
  absl::Duration tick_interval = absl::Milliseconds(100);
};

class QuantdServer {
 public:
  // UNAVAILABLE when the listen or metrics address is taken (no port sharing: another
  // process on the same address, quantd or not, makes the start fail).
  static absl::StatusOr<std::unique_ptr<QuantdServer>> Start(ServerOptions options);
  ~QuantdServer();

  int port() const { return port_; }
  int metrics_port() const { return metrics_.port(); }
  Metrics& metrics() { return metrics_; }

  void Shutdown(absl::Duration grace);

 private:
  explicit QuantdServer(ServerOptions options);
  absl::Status Init();

  ServerOptions options_;
  Metrics metrics_;
  std::unique_ptr<SqliteStore> store_;
  EventBus bus_;
  std::unique_ptr<Scheduler> scheduler_;
  std::unique_ptr<Authenticator> auth_;
  std::unique_ptr<QuantizeServiceImpl> quantize_service_;
  std::unique_ptr<WorkerServiceImpl> worker_service_;
  std::unique_ptr<grpc::Server> server_;
  int port_ = 0;
  absl::Notification stop_ticking_;
  std::thread ticker_;
  std::atomic<bool> shut_down_{false};
};

}  // namespace quantd

#endif  // QUANTD_SERVER_RPC_SERVER_H_
