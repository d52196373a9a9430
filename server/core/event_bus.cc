#include "server/core/event_bus.h"

namespace quantd {

void EventBus::Subscribe(const std::string& job_id, EventSubscriber* subscriber) {
  absl::MutexLock lock(&mu_);
  if (subscribers_[job_id].insert(subscriber).second) ++count_;
}

void EventBus::Unsubscribe(const std::string& job_id, EventSubscriber* subscriber) {
  absl::MutexLock lock(&mu_);
  auto it = subscribers_.find(job_id);
  if (it == subscribers_.end()) return;
  if (it->second.erase(subscriber) > 0) --count_;
  if (it->second.empty()) subscribers_.erase(it);
}

void EventBus::Publish(const std::vector<EventPtr>& events) {
  absl::MutexLock lock(&mu_);
  for (const EventPtr& event : events) {
    auto it = subscribers_.find(event->job_id());
    if (it == subscribers_.end()) continue;
    for (EventSubscriber* subscriber : it->second) subscriber->OnEvent(event);
  }
}

size_t EventBus::subscriber_count() const {
  absl::MutexLock lock(&mu_);
  return count_;
}

}  // namespace quantd
