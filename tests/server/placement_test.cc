#include "server/core/placement.h"

#include "gtest/gtest.h"

namespace quantd {
namespace {

constexpr int64_t kGiB = 1024LL * 1024 * 1024;

v1::Device Gpu(const std::string& id, int64_t total_gib, int64_t free_gib) {
  v1::Device device;
  device.set_id(id);
  device.set_total_memory_bytes(total_gib * kGiB);
  device.set_free_memory_bytes(free_gib * kGiB);
  return device;
}

WorkerCandidate Worker(const std::string& id, std::vector<v1::Device> devices) {
  WorkerCandidate worker;
  worker.worker_id = id;
  worker.connected = true;
  worker.max_jobs = 4;
  worker.devices = std::move(devices);
  return worker;
}

v1::Resources Need(int devices, int64_t gib) {
  v1::Resources resources;
  resources.set_device_count(devices);
  resources.set_min_device_memory_bytes(gib * kGiB);
  return resources;
}

TEST(PlacementTest, NoWorkers) {
  EXPECT_EQ(Place(Need(1, 0), {}).pending_reason, "no worker connected");
}

TEST(PlacementTest, PicksWorkerWithEnoughFreeMemory) {
  auto decision = Place(
      Need(1, 40), {Worker("a", {Gpu("cuda:0", 24, 24)}), Worker("b", {Gpu("cuda:0", 80, 79)})});
  ASSERT_TRUE(decision.placed);
  EXPECT_EQ(decision.worker_id, "b");
  EXPECT_EQ(decision.device_ids, std::vector<std::string>{"cuda:0"});
}

TEST(PlacementTest, ReasonNamesMemory) {
  auto too_small = Place(Need(1, 40), {Worker("a", {Gpu("cuda:0", 24, 24)})});
  EXPECT_FALSE(too_small.placed);
  EXPECT_EQ(too_small.pending_reason, "no worker with a device of >= 40 GiB");
  auto not_free = Place(Need(1, 40), {Worker("a", {Gpu("cuda:0", 80, 10)})});
  EXPECT_EQ(not_free.pending_reason, "no worker with >= 40 GiB free");
}

TEST(PlacementTest, DeviceCountAndBusyDevices) {
  WorkerCandidate two = Worker("a", {Gpu("cuda:0", 80, 80), Gpu("cuda:1", 80, 80)});
  EXPECT_EQ(Place(Need(4, 0), {two}).pending_reason, "no worker with 4 devices");
  auto both = Place(Need(2, 0), {two});
  ASSERT_TRUE(both.placed);
  EXPECT_EQ(both.device_ids.size(), 2u);
  two.busy_device_ids = {"cuda:0"};
  two.running_jobs = 1;
  EXPECT_EQ(Place(Need(2, 0), {two}).pending_reason, "all suitable workers busy");
  auto one = Place(Need(1, 0), {two});
  ASSERT_TRUE(one.placed);
  EXPECT_EQ(one.device_ids, std::vector<std::string>{"cuda:1"});
}

TEST(PlacementTest, SkipsDrainingFullAndExcludedWorkers) {
  WorkerCandidate draining = Worker("a", {Gpu("cuda:0", 80, 80)});
  draining.draining = true;
  WorkerCandidate full = Worker("b", {Gpu("cuda:0", 80, 80)});
  full.max_jobs = 1;
  full.running_jobs = 1;
  WorkerCandidate excluded = Worker("c", {Gpu("cuda:0", 80, 80)});
  excluded.excluded = true;
  EXPECT_FALSE(Place(Need(1, 0), {draining, full, excluded}).placed);
  WorkerCandidate ok = Worker("d", {Gpu("cuda:0", 80, 80)});
  EXPECT_EQ(Place(Need(1, 0), {draining, full, excluded, ok}).worker_id, "d");
}

TEST(PlacementTest, SpreadsOverTheWorkerWithMostFreeDevices) {
  WorkerCandidate one = Worker("a", {Gpu("cuda:0", 80, 80)});
  WorkerCandidate two = Worker("b", {Gpu("cuda:0", 80, 80), Gpu("cuda:1", 80, 80)});
  EXPECT_EQ(Place(Need(1, 0), {one, two}).worker_id, "b");
}

TEST(PlacementTest, FormatBytes) {
  EXPECT_EQ(FormatBytes(40 * kGiB), "40 GiB");
  EXPECT_EQ(FormatBytes(3 * kGiB / 2), "1.5 GiB");
  EXPECT_EQ(FormatBytes(512LL * 1024 * 1024), "512 MiB");
}

}  // namespace
}  // namespace quantd
