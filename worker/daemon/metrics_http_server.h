// A minimal HTTP/1.0 server for GET /metrics, on one background thread.
//
// The worker does not use prometheus-cpp's civetweb exposer: in a process that also links
// LibTorch, civetweb fails to start its context after binding. This server answers
// "GET /metrics" with the text `render` returns, 404 for other paths, and closes each
// connection after one response. Requests larger than 8 KiB or slower than 2 s are dropped.
#ifndef QUANTD_WORKER_DAEMON_METRICS_HTTP_SERVER_H_
#define QUANTD_WORKER_DAEMON_METRICS_HTTP_SERVER_H_

#include <atomic>
#include <functional>
#include <string>
#include <thread>

#include "absl/status/status.h"

namespace quantd::daemon {

class MetricsHttpServer {
 public:
  explicit MetricsHttpServer(std::function<std::string()> render) : render_(std::move(render)) {}
  ~MetricsHttpServer();

  // Binds "host:port" (port 0 picks one) and starts serving. UNAVAILABLE when it cannot bind;
  // INVALID_ARGUMENT for a malformed address.
  absl::Status Start(const std::string& address);
  void Stop();
  int port() const { return port_; }

 private:
  void Serve();
  void Answer(int connection);

  std::function<std::string()> render_;
  int listen_fd_ = -1;
  int port_ = 0;
  std::atomic<bool> stopping_{false};
  std::thread thread_;
};

}  // namespace quantd::daemon

#endif  // QUANTD_WORKER_DAEMON_METRICS_HTTP_SERVER_H_
