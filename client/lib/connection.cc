#include "client/lib/connection.h"

#include <cstdlib>
#include <fstream>
#include <sstream>

#include "absl/strings/numbers.h"
#include "grpcpp/create_channel.h"
#include "grpcpp/security/credentials.h"
#include "yaml-cpp/yaml.h"

namespace quantd::client {

absl::StatusOr<ConnectionOptions> OptionsFromConfigAndEnvironment() {
  ConnectionOptions options;
  std::string path;
  if (const char* explicit_path = std::getenv("QUANTCTL_CONFIG")) {
    path = explicit_path;
  } else if (const char* home = std::getenv("HOME")) {
    path = std::string(home) + "/.config/quantd/quantctl.yaml";
  }
  if (!path.empty() && std::ifstream(path).good()) {
    try {
      const YAML::Node config = YAML::LoadFile(path);
      for (const auto& entry : config) {
        const std::string key = entry.first.as<std::string>();
        const std::string value = entry.second.as<std::string>();
        if (key == "addr") {
          options.address = value;
        } else if (key == "token") {
          options.token = value;
        } else if (key == "ca_cert") {
          options.ca_cert_path = value;
        } else if (key == "timeout_seconds") {
          double seconds = 0;
          if (!absl::SimpleAtod(value, &seconds) || !(seconds > 0)) {
            return absl::InvalidArgumentError(path + ": timeout_seconds must be a positive " +
                                              "number of seconds, not \"" + value + "\"");
          }
          options.timeout = std::chrono::milliseconds(static_cast<int64_t>(seconds * 1000));
        } else {
          return absl::InvalidArgumentError(path + ": unknown key \"" + key +
                                            "\" (known: addr, token, ca_cert, timeout_seconds)");
        }
      }
    } catch (const std::exception& e) {
      return absl::InvalidArgumentError(path + ": " + e.what());
    }
  }
  if (const char* address = std::getenv("QUANTD_ADDR"); address != nullptr && *address) {
    options.address = address;
  }
  if (const char* token = std::getenv("QUANTD_TOKEN"); token != nullptr) options.token = token;
  if (const char* ca = std::getenv("QUANTD_CA_CERT"); ca != nullptr) options.ca_cert_path = ca;
  return options;
}

absl::StatusOr<std::shared_ptr<grpc::Channel>> MakeChannel(const ConnectionOptions& options) {
  std::shared_ptr<grpc::ChannelCredentials> credentials;
  if (options.ca_cert_path.empty()) {
    credentials = grpc::InsecureChannelCredentials();
  } else {
    std::ifstream in(options.ca_cert_path);
    if (!in) return absl::NotFoundError("cannot read CA certificate " + options.ca_cert_path);
    std::stringstream pem;
    pem << in.rdbuf();
    grpc::SslCredentialsOptions ssl;
    ssl.pem_root_certs = pem.str();
    credentials = grpc::SslCredentials(ssl);
  }
  grpc::ChannelArguments arguments;
  arguments.SetMaxReceiveMessageSize(64 << 20);
  return grpc::CreateCustomChannel(options.address, credentials, arguments);
}

void PrepareContext(const ConnectionOptions& options, bool with_deadline,
                    grpc::ClientContext* context) {
  if (!options.token.empty()) context->AddMetadata("authorization", "Bearer " + options.token);
  if (with_deadline) context->set_deadline(std::chrono::system_clock::now() + options.timeout);
}

absl::Status ToAbslStatus(const grpc::Status& status) {
  return absl::Status(static_cast<absl::StatusCode>(status.error_code()), status.error_message());
}

}  // namespace quantd::client
