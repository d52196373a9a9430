// The one place absl::Status becomes grpc::Status (the codes share their numbering).
#ifndef QUANTD_SERVER_RPC_STATUS_H_
#define QUANTD_SERVER_RPC_STATUS_H_

#include <string>

#include "absl/status/status.h"
#include "grpcpp/support/status.h"

namespace quantd {

inline grpc::Status ToGrpcStatus(const absl::Status& status) {
  if (status.ok()) return grpc::Status::OK;
  return grpc::Status(static_cast<grpc::StatusCode>(status.code()), std::string(status.message()));
}

}  // namespace quantd

#endif  // QUANTD_SERVER_RPC_STATUS_H_
