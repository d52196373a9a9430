// Status propagation macros. Our Abseil (20220623) does not ship them.
//
//   RETURN_IF_ERROR(DoThing());                 // returns the status when not OK
//   ASSIGN_OR_RETURN(auto value, MakeValue());  // returns the status when not OK,
//                                               // otherwise moves the value out
#ifndef QUANTD_PROTO_COMMON_STATUS_MACROS_H_
#define QUANTD_PROTO_COMMON_STATUS_MACROS_H_

#include "absl/status/status.h"
#include "absl/status/statusor.h"

#define QUANTD_STATUS_CONCAT_INNER_(a, b) a##b
#define QUANTD_STATUS_CONCAT_(a, b) QUANTD_STATUS_CONCAT_INNER_(a, b)

#define RETURN_IF_ERROR(expr)                                    \
  do {                                                           \
    const ::absl::Status quantd_status_ = (expr);                \
    if (!quantd_status_.ok()) return quantd_status_;             \
  } while (0)

#define QUANTD_ASSIGN_OR_RETURN_IMPL_(statusor, lhs, rexpr) \
  auto statusor = (rexpr);                                  \
  if (!statusor.ok()) return statusor.status();             \
  lhs = std::move(statusor).value()

#define ASSIGN_OR_RETURN(lhs, rexpr)                                             \
  QUANTD_ASSIGN_OR_RETURN_IMPL_(                                                 \
      QUANTD_STATUS_CONCAT_(quantd_statusor_, __LINE__), lhs, rexpr)

#endif  // QUANTD_PROTO_COMMON_STATUS_MACROS_H_
