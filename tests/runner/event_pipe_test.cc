#include "worker/runner/event_pipe.h"

#include <random>

#include "gtest/gtest.h"

namespace quantd::runner {
namespace {

v1::JobEvent LossEvent(int step) {
  v1::JobEvent event;
  event.mutable_loss()->set_step(step);
  event.mutable_loss()->set_loss(1.0 / (step + 1));
  event.mutable_loss()->set_split(std::string(step * 37 % 300, 'x'));  // varied sizes
  return event;
}

TEST(EventPipeTest, ReassemblesEventsSplitAtEveryByteBoundary) {
  std::string stream;
  for (int i = 0; i < 50; ++i) AppendFramedEvent(LossEvent(i), &stream);
  std::mt19937 rng(3);
  EventPipeReader reader;
  std::vector<v1::JobEvent> events;
  size_t offset = 0;
  while (offset < stream.size()) {
    const size_t chunk = std::min<size_t>(1 + rng() % 40, stream.size() - offset);
    ASSERT_TRUE(reader.Feed(stream.data() + offset, chunk, &events).ok());
    offset += chunk;
  }
  ASSERT_EQ(events.size(), 50u);
  for (int i = 0; i < 50; ++i) EXPECT_EQ(events[i].loss().step(), i);
  EXPECT_EQ(reader.pending_bytes(), 0u);
}

TEST(EventPipeTest, GarbageIsDataLossNotACrash) {
  EventPipeReader reader;
  std::vector<v1::JobEvent> events;
  const std::string huge_length = "\xff\xff\xff\xff\x7f";
  EXPECT_EQ(reader.Feed(huge_length.data(), huge_length.size(), &events).code(),
            absl::StatusCode::kDataLoss);
  EventPipeReader second;
  const std::string not_a_message = "\x03\xff\xff\xff";
  EXPECT_EQ(second.Feed(not_a_message.data(), not_a_message.size(), &events).code(),
            absl::StatusCode::kDataLoss);
  EXPECT_TRUE(events.empty());
}

}  // namespace
}  // namespace quantd::runner
