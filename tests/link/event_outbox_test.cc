#include "worker/link/event_outbox.h"

#include <filesystem>

#include "google/protobuf/util/time_util.h"
#include "gtest/gtest.h"

namespace quantd::link {
namespace {

v1::JobEvent Step(int step) {
  v1::JobEvent event;
  event.mutable_loss()->set_step(step);
  return event;
}

std::vector<int64_t> Steps(const std::vector<std::pair<int64_t, v1::JobEvent>>& pending) {
  std::vector<int64_t> steps;
  for (const auto& [sequence, event] : pending) {
    EXPECT_EQ(sequence, event.loss().step());
    steps.push_back(event.loss().step());
  }
  return steps;
}

TEST(EventOutboxTest, KeepsEventsUntilAcknowledged) {
  EventOutbox outbox(100, ::testing::TempDir() + "/outbox1");
  for (int i = 1; i <= 5; ++i) EXPECT_EQ(outbox.Add("j1", Step(i)), i);
  EXPECT_EQ(Steps(outbox.Pending("j1", 0, 10)), (std::vector<int64_t>{1, 2, 3, 4, 5}));
  EXPECT_EQ(Steps(outbox.Pending("j1", 3, 10)), (std::vector<int64_t>{4, 5}));
  outbox.Ack("j1", 2);
  EXPECT_EQ(outbox.acked("j1"), 2);
  // After a reconnect the worker resends from the acknowledged point.
  EXPECT_EQ(Steps(outbox.Pending("j1", 0, 2)), (std::vector<int64_t>{3, 4}));
  outbox.Ack("j1", 99);  // clamped to what exists
  EXPECT_EQ(outbox.acked("j1"), 5);
  EXPECT_TRUE(outbox.Pending("j1", 0, 10).empty());
  EXPECT_EQ(outbox.in_memory(), 0u);
}

// Events held while quantd is unreachable keep the time they were queued: quantd used to
// stamp them when they arrived (all with the reconnect time).
TEST(EventOutboxTest, StampsEventsWithoutTimeAndKeepsGivenTimes) {
  const std::string spill = ::testing::TempDir() + "/outbox_time";
  std::filesystem::remove_all(spill);  // an earlier run's spill file
  EventOutbox outbox(1, spill);        // the 2nd and 3rd event spill
  const int64_t before = google::protobuf::util::TimeUtil::GetCurrentTime().seconds();
  v1::JobEvent given = Step(2);
  given.mutable_time()->set_seconds(1700000000);
  given.mutable_time()->set_nanos(5);
  outbox.Add("j1", Step(1));
  outbox.Add("j1", given);
  outbox.Add("j1", Step(3));
  const int64_t after = google::protobuf::util::TimeUtil::GetCurrentTime().seconds();
  const auto pending = outbox.Pending("j1", 0, 10);
  ASSERT_EQ(pending.size(), 3u);
  for (int i : {0, 2}) {
    ASSERT_TRUE(pending[i].second.has_time()) << i;
    EXPECT_GE(pending[i].second.time().seconds(), before);
    EXPECT_LE(pending[i].second.time().seconds(), after);
  }
  EXPECT_EQ(pending[1].second.time().seconds(), 1700000000);
  EXPECT_EQ(pending[1].second.time().nanos(), 5);
  outbox.Forget("j1");
}

TEST(EventOutboxTest, ANewAttemptStartsAFreshQueue) {
  EventOutbox outbox(100, ::testing::TempDir() + "/outbox_attempts");
  EXPECT_FALSE(outbox.attempt("j1").has_value());
  outbox.StartAttempt("j1", 0);
  EXPECT_EQ(outbox.attempt("j1"), 0);
  for (int i = 1; i <= 3; ++i) outbox.Add("j1", Step(i));
  outbox.StartAttempt("j1", 0);  // the same attempt again keeps its events
  EXPECT_EQ(outbox.last("j1"), 3);
  outbox.StartAttempt("j1", 1);  // attempt 0's unsent events are of no use any more
  EXPECT_EQ(outbox.attempt("j1"), 1);
  EXPECT_EQ(outbox.last("j1"), 0);
  EXPECT_EQ(outbox.in_memory(), 0u);
  EXPECT_EQ(outbox.Add("j1", Step(1)), 1);
  outbox.Forget("j1");
  EXPECT_FALSE(outbox.attempt("j1").has_value());
}

TEST(EventOutboxTest, SpillsBeyondTheMemoryBoundAndLosesNothing) {
  const std::string dir = ::testing::TempDir() + "/outbox2";
  std::filesystem::remove_all(dir);
  EventOutbox outbox(10, dir);
  for (int i = 1; i <= 35; ++i) outbox.Add("j1", Step(i));
  EXPECT_EQ(outbox.in_memory(), 10u);
  EXPECT_TRUE(std::filesystem::exists(dir + "/j1.events.spill"));
  std::vector<int64_t> all;
  for (int i = 1; i <= 35; ++i) all.push_back(i);
  EXPECT_EQ(Steps(outbox.Pending("j1", 0, 100)), all);
  outbox.Ack("j1", 10);  // memory drained: spilled events come back
  EXPECT_EQ(outbox.in_memory(), 10u);
  EXPECT_EQ(Steps(outbox.Pending("j1", 0, 3)), (std::vector<int64_t>{11, 12, 13}));
  outbox.Ack("j1", 34);
  EXPECT_EQ(Steps(outbox.Pending("j1", 0, 100)), (std::vector<int64_t>{35}));
  outbox.Forget("j1");
  EXPECT_FALSE(std::filesystem::exists(dir + "/j1.events.spill"));
  EXPECT_EQ(outbox.in_memory(), 0u);
}

}  // namespace
}  // namespace quantd::link
