// Conversions between absl::Time and google.protobuf.Timestamp.
#ifndef QUANTD_SERVER_CORE_TIME_UTIL_H_
#define QUANTD_SERVER_CORE_TIME_UTIL_H_

#include "absl/time/time.h"
#include "google/protobuf/timestamp.pb.h"

namespace quantd {

inline void ToProtoTime(absl::Time time, google::protobuf::Timestamp* out) {
  const int64_t ns = absl::ToUnixNanos(time);
  int64_t seconds = ns / 1000000000;
  int64_t nanos = ns % 1000000000;
  if (nanos < 0) {
    nanos += 1000000000;
    --seconds;
  }
  out->set_seconds(seconds);
  out->set_nanos(static_cast<int32_t>(nanos));
}

inline absl::Time FromProtoTime(const google::protobuf::Timestamp& time) {
  return absl::FromUnixSeconds(time.seconds()) + absl::Nanoseconds(time.nanos());
}

}  // namespace quantd

#endif  // QUANTD_SERVER_CORE_TIME_UTIL_H_
