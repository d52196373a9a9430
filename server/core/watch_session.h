// WatchSession: the event stream of one WatchJob call, without any networking.
//
// It yields the stored events with sequence > after_sequence, then the live ones, each
// sequence exactly once and in order, and ends after the job's terminal state change. It
// subscribes to the bus before reading the store, so an event committed while the replay
// runs is either read from the store or buffered, and duplicates are dropped by sequence.
//
// Live events wait in a buffer of at most `max_buffered` events. While replaying, an
// overflowing buffer just falls back to reading the store; once live, an overflow means the
// watcher is too slow and Poll() returns RESOURCE_EXHAUSTED (the client resumes with
// after_sequence); the buffer is dropped at that moment, so a stalled watcher holds at most
// `max_buffered` events.
//
// Thread safety: Poll() is called by one consumer at a time; OnEvent may run concurrently
// on the publishing thread. The wake-up callback runs on the publishing thread (with the
// bus lock held) when events arrive after a Poll() returned kWait, or when the buffer
// overflows; it must only schedule work.
#ifndef QUANTD_SERVER_CORE_WATCH_SESSION_H_
#define QUANTD_SERVER_CORE_WATCH_SESSION_H_

#include <cstdint>
#include <deque>
#include <functional>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "server/core/event_bus.h"
#include "server/core/job_store.h"

namespace quantd {

class WatchSession : public EventSubscriber {
 public:
  enum class Next {
    kEvents,  // `out` holds events to send; call Poll again after sending them
    kWait,    // nothing now; the wake-up callback fires when there is
    kEnd,     // the terminal event was delivered (or the job was already over)
    kError,   // see status(): RESOURCE_EXHAUSTED (too slow) or a store error
  };

  // `store` and `bus` are not owned and must outlive the session. `terminal_at` is the
  // sequence of the job's terminal state change when the job already ended, 0 otherwise.
  WatchSession(JobStore* store, EventBus* bus, std::string job_id, int64_t after_sequence,
               int64_t terminal_at, size_t max_buffered, std::function<void()> wakeup);
  ~WatchSession() override;

  // Subscribes to the bus. Call once before Poll.
  void Start();
  // Unsubscribes; no wake-up happens after it returns. Idempotent.
  void Stop();

  Next Poll(std::vector<EventPtr>* out);
  absl::Status status() const;
  int64_t last_sequence() const;

  void OnEvent(const EventPtr& event) override;

 private:
  JobStore* const store_;
  EventBus* const bus_;
  const std::string job_id_;
  const int64_t terminal_at_;
  const size_t max_buffered_;
  const std::function<void()> wakeup_;

  mutable absl::Mutex mu_;
  int64_t last_sent_ ABSL_GUARDED_BY(mu_);
  bool replaying_ ABSL_GUARDED_BY(mu_) = true;
  bool waiting_ ABSL_GUARDED_BY(mu_) = false;
  bool overflowed_ ABSL_GUARDED_BY(mu_) = false;
  bool ended_ ABSL_GUARDED_BY(mu_) = false;
  bool subscribed_ ABSL_GUARDED_BY(mu_) = false;
  absl::Status status_ ABSL_GUARDED_BY(mu_);
  std::deque<EventPtr> buffer_ ABSL_GUARDED_BY(mu_);
};

}  // namespace quantd

#endif  // QUANTD_SERVER_CORE_WATCH_SESSION_H_
