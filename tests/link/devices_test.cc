#include "worker/link/devices.h"

#include "gtest/gtest.h"

namespace quantd::link {
namespace {

TEST(DevicesTest, ParsesNvidiaSmi) {
  const auto devices = ParseNvidiaSmi(
      "0, NVIDIA H100 80GB HBM3, 81559, 80000, 9.0\n1, NVIDIA A100-SXM4-40GB, 40960, 1024, 8.0\n");
  ASSERT_TRUE(devices.ok());
  ASSERT_EQ(devices->size(), 2u);
  EXPECT_EQ((*devices)[0].id(), "cuda:0");
  EXPECT_EQ((*devices)[0].name(), "NVIDIA H100 80GB HBM3");
  EXPECT_EQ((*devices)[0].total_memory_bytes(), int64_t{81559} << 20);
  EXPECT_EQ((*devices)[1].free_memory_bytes(), int64_t{1024} << 20);
  EXPECT_EQ((*devices)[1].compute_capability(), "8.0");
  EXPECT_FALSE(ParseNvidiaSmi("0, GPU, lots, 1, 9.0\n").ok());
}

TEST(DevicesTest, CpuWorkerOffersTheCpuWithRealMemoryFigures) {
  const v1::Device cpu = CpuDevice();
  EXPECT_EQ(cpu.id(), "cpu");
  EXPECT_GT(cpu.total_memory_bytes(), int64_t{1} << 30);
  EXPECT_GT(cpu.free_memory_bytes(), 0);
  EXPECT_LE(cpu.free_memory_bytes(), cpu.total_memory_bytes());
}

}  // namespace
}  // namespace quantd::link
