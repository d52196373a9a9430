#include "kernels/int4_pack.h"

#include <random>
#include <vector>

#include "gtest/gtest.h"

#ifdef QUANTD_WITH_CUDA
#include <cuda_runtime.h>
#endif

namespace quantd::kernels {
namespace {

std::vector<int8_t> RandomInt4(int64_t count, uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_int_distribution<int> dist(-8, 7);
  std::vector<int8_t> values(count);
  for (auto& v : values) v = static_cast<int8_t>(dist(rng));
  return values;
}

TEST(Int4PackTest, DocumentedBitOrder) {
  const std::vector<int8_t> values = {1, -1, 7, -8, 3};
  std::vector<uint8_t> packed(PackedInt4Bytes(values.size()));
  PackInt4(values.data(), values.size(), packed.data());
  ASSERT_EQ(packed.size(), 3u);
  EXPECT_EQ(packed[0], 0xF1);  // low nibble 1, high nibble -1 (0xF)
  EXPECT_EQ(packed[1], 0x87);  // low nibble 7, high nibble -8 (0x8)
  EXPECT_EQ(packed[2], 0x03);  // odd tail: high nibble zero
}

TEST(Int4PackTest, RoundTripsEveryValueAndOddLengths) {
  for (int64_t count : {1, 2, 15, 16, 1001}) {
    const auto values = RandomInt4(count, static_cast<uint32_t>(count));
    std::vector<uint8_t> packed(PackedInt4Bytes(count));
    PackInt4(values.data(), count, packed.data());
    std::vector<int8_t> unpacked(count);
    UnpackInt4(packed.data(), count, unpacked.data());
    EXPECT_EQ(unpacked, values) << "count " << count;
  }
}

TEST(Int4PackTest, Int4Pack_CUDA) {
  if (!CudaKernelsAvailable()) GTEST_SKIP() << "no CUDA device";
#ifdef QUANTD_WITH_CUDA
  const int64_t count = 1 << 20 | 1;
  const auto values = RandomInt4(count, 7);
  std::vector<uint8_t> expected(PackedInt4Bytes(count));
  PackInt4(values.data(), count, expected.data());

  int8_t* d_values = nullptr;
  uint8_t* d_packed = nullptr;
  int8_t* d_unpacked = nullptr;
  ASSERT_EQ(cudaMalloc(&d_values, count), cudaSuccess);
  ASSERT_EQ(cudaMalloc(&d_packed, expected.size()), cudaSuccess);
  ASSERT_EQ(cudaMalloc(&d_unpacked, count), cudaSuccess);
  cudaMemcpy(d_values, values.data(), count, cudaMemcpyHostToDevice);
  EXPECT_STREQ(PackInt4Cuda(d_values, count, d_packed, nullptr), "");
  EXPECT_STREQ(UnpackInt4Cuda(d_packed, count, d_unpacked, nullptr), "");
  std::vector<uint8_t> packed(expected.size());
  std::vector<int8_t> unpacked(count);
  cudaMemcpy(packed.data(), d_packed, packed.size(), cudaMemcpyDeviceToHost);
  cudaMemcpy(unpacked.data(), d_unpacked, count, cudaMemcpyDeviceToHost);
  cudaFree(d_values);
  cudaFree(d_packed);
  cudaFree(d_unpacked);
  EXPECT_EQ(packed, expected);
  EXPECT_EQ(unpacked, values);
#endif
}

}  // namespace
}  // namespace quantd::kernels
