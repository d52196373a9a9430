// How a client reaches quantd: address, bearer token, TLS, per-call deadline.
//
// Settings come, in increasing priority, from a config file ($QUANTCTL_CONFIG, else
// ~/.config/quantd/quantctl.yaml, when present: keys addr, token, ca_cert, timeout_seconds),
// the environment (QUANTD_ADDR, QUANTD_TOKEN, QUANTD_CA_CERT) and explicit values
// (command-line flags). Thread-compatible.
#ifndef QUANTD_CLIENT_LIB_CONNECTION_H_
#define QUANTD_CLIENT_LIB_CONNECTION_H_

#include <chrono>
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "grpcpp/channel.h"
#include "grpcpp/client_context.h"

namespace quantd::client {

struct ConnectionOptions {
  // host:port of quantd. Default "127.0.0.1:7070".
  std::string address = "127.0.0.1:7070";
  // Bearer token; empty = none (loopback demo servers run without auth).
  std::string token;
  // PEM file of the CA that signed the server certificate; empty = plaintext.
  std::string ca_cert_path;
  // Deadline of each unary call.
  std::chrono::milliseconds timeout{10000};
};

// Options from the config file and the environment, on top of the defaults.
// INVALID_ARGUMENT naming the file for an unreadable config or an unknown key.
absl::StatusOr<ConnectionOptions> OptionsFromConfigAndEnvironment();

// A channel for `options`; NOT_FOUND when the CA file cannot be read.
absl::StatusOr<std::shared_ptr<grpc::Channel>> MakeChannel(const ConnectionOptions& options);

// Adds the bearer token and, when `with_deadline`, the unary deadline to `context`.
void PrepareContext(const ConnectionOptions& options, bool with_deadline,
                    grpc::ClientContext* context);

// A grpc::Status as an absl::Status with the same code and message.
absl::Status ToAbslStatus(const grpc::Status& status);

}  // namespace quantd::client

#endif  // QUANTD_CLIENT_LIB_CONNECTION_H_
