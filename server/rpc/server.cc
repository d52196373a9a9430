#include "server/rpc/server.h"

#include <utility>

#include "grpcpp/ext/proto_server_reflection_plugin.h"
#include "grpcpp/health_check_service_interface.h"
#include "grpcpp/security/server_credentials.h"
#include "grpcpp/server_builder.h"
#include "proto/common/status_macros.h"
#include "spdlog/spdlog.h"

namespace quantd {

QuantdServer::QuantdServer(ServerOptions options) : options_(std::move(options)) {}

absl::StatusOr<std::unique_ptr<QuantdServer>> QuantdServer::Start(ServerOptions options) {
  std::unique_ptr<QuantdServer> server(new QuantdServer(std::move(options)));
  RETURN_IF_ERROR(server->Init());
  return server;
}

absl::Status QuantdServer::Init() {
  SqliteStoreOptions store_options;
  store_options.path = options_.db_path;
  store_options.synchronous_full = options_.store_sync_full;
  store_options.on_commit = [this](absl::Duration latency, int batches, int events) {
    metrics_.OnStoreCommit(latency, batches, events);
  };
  ASSIGN_OR_RETURN(store_, SqliteStore::Open(std::move(store_options)));

  scheduler_ = std::make_unique<Scheduler>(options_.scheduler, RealClock::Get(), store_.get(),
                                           &bus_, &metrics_);
  RETURN_IF_ERROR(scheduler_->Recover());
  metrics_.SetSnapshotSource([this] {
    GaugeSnapshot snapshot;
    snapshot.scheduler = scheduler_->Stats();
    snapshot.watchers = static_cast<int64_t>(bus_.subscriber_count());
    return snapshot;
  });
  if (!options_.metrics_address.empty()) RETURN_IF_ERROR(metrics_.Serve(options_.metrics_address));

  auth_ = std::make_unique<Authenticator>(options_.tokens);
  quantize_service_ = std::make_unique<QuantizeServiceImpl>(scheduler_.get(), store_.get(), &bus_,
                                                            auth_.get(), options_.watch_buffer);
  worker_service_ = std::make_unique<WorkerServiceImpl>(scheduler_.get(), auth_.get());

  grpc::EnableDefaultHealthCheckService(true);
  grpc::reflection::InitProtoReflectionServerBuilderPlugin();
  std::shared_ptr<grpc::ServerCredentials> credentials;
  if (!options_.tls_cert_pem.empty() || !options_.tls_key_pem.empty()) {
    if (options_.tls_cert_pem.empty() || options_.tls_key_pem.empty()) {
      return absl::InvalidArgumentError("tls: both a certificate and a key are needed");
    }
    grpc::SslServerCredentialsOptions ssl;
    ssl.pem_key_cert_pairs.push_back({options_.tls_key_pem, options_.tls_cert_pem});
    credentials = grpc::SslServerCredentials(ssl);
  } else {
    credentials = grpc::InsecureServerCredentials();
  }
  grpc::ServerBuilder builder;
  builder.AddListeningPort(options_.listen_address, credentials, &port_);
  builder.SetMaxReceiveMessageSize(options_.max_receive_message_bytes);
  // gRPC sets SO_REUSEPORT by default: a second quantd would share the port and clients would
  // reach either process at random. A taken address must fail the start instead.
  builder.AddChannelArgument(GRPC_ARG_ALLOW_REUSEPORT, 0);
  // Pings find dead peers of long streams (watchers, workers) that send nothing.
  builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_TIME_MS, 60 * 1000);
  builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_TIMEOUT_MS, 20 * 1000);
  builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS, 1);
  builder.AddChannelArgument(GRPC_ARG_HTTP2_MAX_PINGS_WITHOUT_DATA, 0);
  builder.RegisterService(quantize_service_.get());
  builder.RegisterService(worker_service_.get());
  server_ = builder.BuildAndStart();
  if (server_ == nullptr || port_ == 0) {
    return absl::UnavailableError("cannot listen on " + options_.listen_address +
                                  " (is another quantd or program using it?)");
  }
  server_->GetHealthCheckService()->SetServingStatus(true);

  ticker_ = std::thread([this] {
    while (!stop_ticking_.WaitForNotificationWithTimeout(options_.tick_interval)) {
      scheduler_->Tick();
    }
  });
  spdlog::info("quantd listening on {} (port {}), auth {}, store {}", options_.listen_address,
               port_, auth_->enabled() ? "on" : "OFF", options_.db_path);
  return absl::OkStatus();
}

void QuantdServer::Shutdown(absl::Duration grace) {
  if (shut_down_.exchange(true)) return;
  if (server_ != nullptr) {
    server_->GetHealthCheckService()->SetServingStatus(false);
    server_->Shutdown(absl::ToChronoTime(absl::Now() + grace));
  }
  if (ticker_.joinable()) {
    stop_ticking_.Notify();
    ticker_.join();
  }
}

QuantdServer::~QuantdServer() {
  Shutdown(absl::ZeroDuration());
  metrics_.SetSnapshotSource(nullptr);
  server_.reset();
  quantize_service_.reset();
  worker_service_.reset();
  // The store commits what is queued before the scheduler whose callbacks it runs goes.
  store_.reset();
  scheduler_.reset();
}

}  // namespace quantd
