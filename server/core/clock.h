// Time source of the scheduler core. Tests substitute a fake that they advance by hand.
//
// Thread safety: implementations must be safe to call from any thread.
#ifndef QUANTD_SERVER_CORE_CLOCK_H_
#define QUANTD_SERVER_CORE_CLOCK_H_

#include "absl/time/clock.h"
#include "absl/time/time.h"

namespace quantd {

class Clock {
 public:
  virtual ~Clock() = default;
  virtual absl::Time Now() const = 0;
};

// The wall clock. A process-wide instance; never deleted.
class RealClock : public Clock {
 public:
  static RealClock* Get() {
    static RealClock* clock = new RealClock;
    return clock;
  }
  absl::Time Now() const override { return absl::Now(); }
};

}  // namespace quantd

#endif  // QUANTD_SERVER_CORE_CLOCK_H_
