// EventBus: fans committed job events out to the watchers of each job.
//
// The scheduler publishes events only after the store committed them, in sequence order per
// job. Subscribers are called on the publishing thread with the bus lock held: OnEvent must
// be quick, must not block and must not call back into the bus. After Unsubscribe returns,
// the subscriber is never called again. Thread-safe.
#ifndef QUANTD_SERVER_CORE_EVENT_BUS_H_
#define QUANTD_SERVER_CORE_EVENT_BUS_H_

#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "quantd/v1/job.pb.h"

namespace quantd {

using EventPtr = std::shared_ptr<const v1::JobEvent>;

class EventSubscriber {
 public:
  virtual ~EventSubscriber() = default;
  virtual void OnEvent(const EventPtr& event) = 0;
};

// Where committed events go.
class EventSink {
 public:
  virtual ~EventSink() = default;
  virtual void Publish(const std::vector<EventPtr>& events) = 0;
};

class EventBus : public EventSink {
 public:
  // `subscriber` is not owned and must stay alive until Unsubscribe returns.
  void Subscribe(const std::string& job_id, EventSubscriber* subscriber);
  void Unsubscribe(const std::string& job_id, EventSubscriber* subscriber);
  void Publish(const std::vector<EventPtr>& events) override;
  // Number of subscriptions (for metrics).
  size_t subscriber_count() const;

 private:
  mutable absl::Mutex mu_;
  std::map<std::string, std::set<EventSubscriber*>> subscribers_ ABSL_GUARDED_BY(mu_);
  size_t count_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace quantd

#endif  // QUANTD_SERVER_CORE_EVENT_BUS_H_
