#include "server/core/watch_session.h"

#include <memory>

#include "gtest/gtest.h"
#include "tests/server/fakes.h"

namespace quantd {
namespace {

using testing::MemoryStore;

class WatchSessionTest : public ::testing::Test {
 protected:
  // Commits one event of job "j" through the store and publishes it like the scheduler.
  void Emit(bool terminal = false) {
    v1::JobEvent event;
    event.set_job_id("j");
    event.set_sequence(++sequence_);
    if (terminal) {
      event.mutable_state_change()->set_from(v1::JOB_STATE_RUNNING);
      event.mutable_state_change()->set_to(v1::JOB_STATE_SUCCEEDED);
    } else {
      event.mutable_log()->set_message("event " + std::to_string(sequence_));
    }
    WriteBatch batch;
    batch.events.push_back(event);
    auto published = std::make_shared<const v1::JobEvent>(event);
    store_.Write(std::move(batch), [this, published](absl::Status) { bus_.Publish({published}); });
  }
  // Polls until kWait/kEnd/kError, appending every sequence received.
  WatchSession::Next Drain(WatchSession& session, std::vector<int64_t>* got) {
    std::vector<EventPtr> events;
    while (true) {
      WatchSession::Next next = session.Poll(&events);
      for (const auto& e : events) got->push_back(e->sequence());
      if (next != WatchSession::Next::kEvents) return next;
    }
  }
  static std::vector<int64_t> Range(int64_t from, int64_t to) {
    std::vector<int64_t> out;
    for (int64_t i = from; i <= to; ++i) out.push_back(i);
    return out;
  }

  MemoryStore store_;
  EventBus bus_;
  int64_t sequence_ = 0;
  int wakeups_ = 0;
};

TEST_F(WatchSessionTest, ReplaysFromTheMiddleThenFollowsLive) {
  for (int i = 0; i < 600; ++i) Emit();
  WatchSession session(&store_, &bus_, "j", 250, 0, 64, [this] { ++wakeups_; });
  session.Start();
  std::vector<int64_t> got;
  EXPECT_EQ(Drain(session, &got), WatchSession::Next::kWait);
  EXPECT_EQ(got, Range(251, 600));
  Emit();
  Emit();
  EXPECT_EQ(wakeups_, 1);
  Emit(/*terminal=*/true);
  EXPECT_EQ(Drain(session, &got), WatchSession::Next::kEnd);
  EXPECT_EQ(got, Range(251, 603));
  EXPECT_EQ(bus_.subscriber_count(), 1u);
  session.Stop();
  EXPECT_EQ(bus_.subscriber_count(), 0u);
}

TEST_F(WatchSessionTest, EventsCommittedDuringReplayAreNeitherLostNorDuplicated) {
  for (int i = 0; i < 300; ++i) Emit();
  // A tiny buffer overflows during the replay: the session must fall back to the store.
  WatchSession session(&store_, &bus_, "j", 0, 0, 4, nullptr);
  session.Start();
  std::vector<int64_t> got;
  std::vector<EventPtr> events;
  ASSERT_EQ(session.Poll(&events), WatchSession::Next::kEvents);
  for (const auto& e : events) got.push_back(e->sequence());
  for (int i = 0; i < 50; ++i) Emit();  // arrive while the replay is half done
  EXPECT_EQ(Drain(session, &got), WatchSession::Next::kWait);
  EXPECT_EQ(got, Range(1, 350));
  Emit(true);
  EXPECT_EQ(Drain(session, &got), WatchSession::Next::kEnd);
  EXPECT_EQ(got, Range(1, 351));
}

TEST_F(WatchSessionTest, SlowLiveWatcherIsEndedWithResourceExhausted) {
  Emit();
  WatchSession session(&store_, &bus_, "j", 0, 0, 8, [this] { ++wakeups_; });
  session.Start();
  std::vector<int64_t> got;
  ASSERT_EQ(Drain(session, &got), WatchSession::Next::kWait);
  for (int i = 0; i < 20; ++i) Emit();
  // Woken by the first new event, and again by the overflow.
  EXPECT_EQ(wakeups_, 2);
  std::vector<EventPtr> events;
  EXPECT_EQ(session.Poll(&events), WatchSession::Next::kError);
  EXPECT_EQ(session.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_NE(std::string(session.status().message()).find("after_sequence = 1"), std::string::npos);
  // Resuming from the last sequence gets everything.
  WatchSession resumed(&store_, &bus_, "j", session.last_sequence(), 0, 8, nullptr);
  resumed.Start();
  std::vector<int64_t> rest;
  EXPECT_EQ(Drain(resumed, &rest), WatchSession::Next::kWait);
  EXPECT_EQ(rest, Range(2, 21));
}

TEST_F(WatchSessionTest, FinishedJobEndsAfterReplay) {
  Emit();
  Emit(true);
  WatchSession from_start(&store_, &bus_, "j", 0, 2, 8, nullptr);
  from_start.Start();
  std::vector<int64_t> got;
  EXPECT_EQ(Drain(from_start, &got), WatchSession::Next::kEnd);
  EXPECT_EQ(got, Range(1, 2));
  WatchSession past_end(&store_, &bus_, "j", 2, 2, 8, nullptr);
  past_end.Start();
  got.clear();
  EXPECT_EQ(Drain(past_end, &got), WatchSession::Next::kEnd);
  EXPECT_TRUE(got.empty());
}

}  // namespace
}  // namespace quantd
