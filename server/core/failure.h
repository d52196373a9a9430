// A v1::Failure in one expression.
#ifndef QUANTD_SERVER_CORE_FAILURE_H_
#define QUANTD_SERVER_CORE_FAILURE_H_

#include <string>
#include <utility>

#include "quantd/v1/job.pb.h"

namespace quantd {

inline v1::Failure MakeFailure(v1::FailureReason reason, std::string message) {
  v1::Failure failure;
  failure.set_reason(reason);
  failure.set_message(std::move(message));
  return failure;
}

}  // namespace quantd

#endif  // QUANTD_SERVER_CORE_FAILURE_H_
