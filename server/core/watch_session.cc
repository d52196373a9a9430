#include "server/core/watch_session.h"

#include <utility>

#include "server/core/job_state.h"

namespace quantd {
namespace {

constexpr int kReplayChunk = 256;

bool IsTerminalEvent(const v1::JobEvent& event) {
  return event.has_state_change() && IsTerminal(event.state_change().to());
}

}  // namespace

WatchSession::WatchSession(JobStore* store, EventBus* bus, std::string job_id,
                           int64_t after_sequence, int64_t terminal_at, size_t max_buffered,
                           std::function<void()> wakeup)
    : store_(store),
      bus_(bus),
      job_id_(std::move(job_id)),
      terminal_at_(terminal_at),
      max_buffered_(max_buffered == 0 ? 1 : max_buffered),
      wakeup_(std::move(wakeup)),
      last_sent_(after_sequence < 0 ? 0 : after_sequence) {}

WatchSession::~WatchSession() { Stop(); }

void WatchSession::Start() {
  {
    absl::MutexLock lock(&mu_);
    if (subscribed_) return;
    subscribed_ = true;
  }
  bus_->Subscribe(job_id_, this);
}

void WatchSession::Stop() {
  {
    absl::MutexLock lock(&mu_);
    if (!subscribed_) return;
    subscribed_ = false;
  }
  bus_->Unsubscribe(job_id_, this);
}

absl::Status WatchSession::status() const {
  absl::MutexLock lock(&mu_);
  return status_;
}

int64_t WatchSession::last_sequence() const {
  absl::MutexLock lock(&mu_);
  return last_sent_;
}

void WatchSession::OnEvent(const EventPtr& event) {
  bool wake = false;
  {
    absl::MutexLock lock(&mu_);
    if (event->sequence() <= last_sent_ || ended_ || overflowed_) return;
    if (buffer_.size() >= max_buffered_) {
      if (replaying_) {
        buffer_.pop_front();  // the replay reads it from the store instead
        buffer_.push_back(event);
      } else {
        // Too slow: drop what is buffered (the watcher resumes from the store) and end.
        overflowed_ = true;
        buffer_.clear();
        wake = true;
      }
    } else {
      buffer_.push_back(event);
    }
    if (waiting_) {
      waiting_ = false;
      wake = true;
    }
  }
  if (wake && wakeup_) wakeup_();
}

WatchSession::Next WatchSession::Poll(std::vector<EventPtr>* out) {
  out->clear();
  absl::MutexLock lock(&mu_);
  while (true) {
    if (ended_) return Next::kEnd;
    if (!status_.ok()) return Next::kError;
    if (terminal_at_ > 0 && last_sent_ >= terminal_at_) {
      ended_ = true;
      return Next::kEnd;
    }
    while (!buffer_.empty() && buffer_.front()->sequence() <= last_sent_) buffer_.pop_front();

    if (replaying_) {
      const int64_t after = last_sent_;
      mu_.Unlock();
      absl::StatusOr<std::vector<v1::JobEvent>> events =
          store_->ReadEvents(job_id_, after, kReplayChunk);
      mu_.Lock();
      if (!events.ok()) {
        status_ = events.status();
        return Next::kError;
      }
      for (v1::JobEvent& event : *events) {
        if (event.sequence() != last_sent_ + 1) continue;
        last_sent_ = event.sequence();
        const bool terminal = IsTerminalEvent(event);
        out->push_back(std::make_shared<const v1::JobEvent>(std::move(event)));
        if (terminal) {
          ended_ = true;
          break;
        }
      }
      if (!out->empty()) return Next::kEvents;
      while (!buffer_.empty() && buffer_.front()->sequence() <= last_sent_) buffer_.pop_front();
      if (buffer_.empty() || buffer_.front()->sequence() == last_sent_ + 1) {
        replaying_ = false;
        overflowed_ = false;
      }
      // Otherwise events between last_sent_ and the buffer are committed: read again.
      continue;
    }

    if (overflowed_) {
      status_ = absl::ResourceExhaustedError(
          "watcher fell too far behind; resume with after_sequence = " +
          std::to_string(last_sent_));
      return Next::kError;
    }
    if (buffer_.empty()) {
      waiting_ = true;
      return Next::kWait;
    }
    if (buffer_.front()->sequence() != last_sent_ + 1) {
      replaying_ = true;  // a gap cannot come from the bus; recover from the store
      continue;
    }
    while (!buffer_.empty() && buffer_.front()->sequence() == last_sent_ + 1) {
      EventPtr event = std::move(buffer_.front());
      buffer_.pop_front();
      last_sent_ = event->sequence();
      const bool terminal = IsTerminalEvent(*event);
      out->push_back(std::move(event));
      if (terminal) {
        ended_ = true;
        break;
      }
    }
    return Next::kEvents;
  }
}

}  // namespace quantd
