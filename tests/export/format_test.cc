// The pieces of the export format: SHA-256, bit packing (and its agreement with the int4 kernel
// format), the streaming safetensors writer read back by the model runtime's reader (one file
// and sharded with an index), and bit-exact weight packing.
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <random>

#include "gtest/gtest.h"
#include "kernels/int4_pack.h"
#include "worker/export/bit_pack.h"
#include "worker/export/safetensors_writer.h"
#include "worker/export/sha256.h"
#include "worker/export/weight_codec.h"
#include "worker/model/checkpoint.h"
#include "worker/quant/quantizers.h"

namespace quantd::exporter {
namespace {

std::string Hash(const std::string& text) {
  Sha256 hash;
  hash.Update(text.data(), text.size());
  return hash.HexDigest();
}

TEST(Sha256Test, KnownVectors) {
  EXPECT_EQ(Hash(""), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  EXPECT_EQ(Hash("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  EXPECT_EQ(Hash("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq"),
            "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
  // Fed in uneven pieces, a million 'a's.
  Sha256 hash;
  const std::string chunk(999, 'a');
  for (int i = 0; i < 1002; ++i) hash.Update(chunk.data(), i == 1001 ? 1 : chunk.size());
  EXPECT_EQ(hash.HexDigest(), "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
}

TEST(BitPackTest, RoundTripsEveryWidthAndOddRowLengths) {
  std::mt19937 rng(7);
  for (int bits = 2; bits <= 8; ++bits) {
    for (int64_t cols : {1, 3, 7, 64, 172}) {
      const int64_t rows = 5;
      std::uniform_int_distribution<int> value(-(1 << (bits - 1)), (1 << (bits - 1)) - 1);
      std::vector<int8_t> values(rows * cols);
      for (auto& v : values) v = static_cast<int8_t>(value(rng));
      std::vector<uint8_t> packed(rows * PackedRowBytes(cols, bits), 0xAA);
      PackSignedBits(values.data(), rows, cols, bits, packed.data());
      std::vector<int8_t> back(values.size());
      UnpackSignedBits(packed.data(), rows, cols, bits, back.data());
      EXPECT_EQ(back, values) << bits << " bits, " << cols << " cols";
      EXPECT_EQ(PackedRowBytes(cols, bits), (cols * bits + 7) / 8);
    }
  }
}

TEST(BitPackTest, FourBitsIsTheInt4KernelOrder) {
  const std::vector<int8_t> values = {-8, 7, 1, -1, 0, 3, -5};
  std::vector<uint8_t> ours(PackedRowBytes(7, 4)), kernel(kernels::PackedInt4Bytes(7));
  PackSignedBits(values.data(), 1, 7, 4, ours.data());
  kernels::PackInt4(values.data(), 7, kernel.data());
  EXPECT_EQ(ours, kernel);
  EXPECT_EQ(ours[0], 0x78);  // value 0 (-8 = 0b1000) low nibble, value 1 (7) high nibble
}

TEST(BitPackTest, ThreeBitsIsALittleEndianBitStream) {
  const std::vector<int8_t> values = {1, -1, 2};  // 001, 111, 010 -> bits 0..8
  std::vector<uint8_t> packed(2);
  PackSignedBits(values.data(), 1, 3, 3, packed.data());
  EXPECT_EQ(packed[0], 0b10111001);  // value 2's low two bits on top
  EXPECT_EQ(packed[1], 0b00000000);  // its high bit (0)
}

class TempDir : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::string(QUANTD_BINARY_DIR) + "/tests/export/format-" + std::to_string(getpid()) +
           "-" + ::testing::UnitTest::GetInstance()->current_test_info()->name();
    std::filesystem::remove_all(dir_);
    std::filesystem::create_directories(dir_);
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }
  std::string dir_;
};

using SafetensorsWriterTest = TempDir;

TEST_F(SafetensorsWriterTest, WritesWhatTheReaderLoads) {
  torch::Tensor a = torch::randn({3, 5});
  torch::Tensor b = torch::randint(0, 255, {4, 2}, torch::kUInt8);
  torch::Tensor c = torch::tensor({7, -3, 11}, torch::kInt32);
  auto writer = SafetensorsWriter::Create(dir_ + "/x.safetensors",
                                          {{"a", model::StDType::kF32, {3, 5}},
                                           {"b", model::StDType::kU8, {4, 2}},
                                           {"c", model::StDType::kI32, {3}}},
                                          {{"format", "test"}});
  ASSERT_TRUE(writer.ok()) << writer.status();
  EXPECT_FALSE((*writer)->Write("b", b.data_ptr(), 8).ok());  // out of order
  ASSERT_TRUE((*writer)->Write("a", a.data_ptr(), 60).ok());
  EXPECT_FALSE((*writer)->Write("b", b.data_ptr(), 7).ok());  // wrong size
  ASSERT_TRUE((*writer)->Write("b", b.data_ptr(), 8).ok());
  EXPECT_FALSE((*writer)->Finish().ok());  // c missing
  ASSERT_TRUE((*writer)->Write("c", c.data_ptr(), 12).ok());
  auto file = (*writer)->Finish();
  ASSERT_TRUE(file.ok()) << file.status();
  EXPECT_EQ(file->bytes, std::filesystem::file_size(dir_ + "/x.safetensors"));
  EXPECT_EQ(file->sha256, *Sha256OfFile(dir_ + "/x.safetensors"));
  EXPECT_EQ((file->bytes - 80) % 8, 0u);  // 8 + header padded to a multiple of 8, then data

  auto checkpoint = model::Checkpoint::Open(dir_ + "/x.safetensors");
  ASSERT_TRUE(checkpoint.ok()) << checkpoint.status();
  EXPECT_TRUE(torch::equal(*(*checkpoint)->Load("a", torch::kFloat32), a));
  EXPECT_TRUE(torch::equal(*(*checkpoint)->LoadStored("b"), b));
  EXPECT_TRUE(torch::equal(*(*checkpoint)->LoadStored("c"), c));
}

TEST_F(SafetensorsWriterTest, ShardsAboveTheLimitWithAnIndex) {
  std::vector<TensorDecl> decls;
  std::vector<torch::Tensor> tensors;
  for (int i = 0; i < 5; ++i) {
    decls.push_back({"t" + std::to_string(i), model::StDType::kF32, {100}});  // 400 bytes
    tensors.push_back(torch::full({100}, static_cast<float>(i)));
  }
  auto writer = ShardedSafetensorsWriter::Create(dir_, "model", decls, 1000);
  ASSERT_TRUE(writer.ok()) << writer.status();
  for (int i = 0; i < 5; ++i) {
    ASSERT_TRUE((*writer)->Write(decls[i].name, tensors[i].data_ptr(), 400).ok());
  }
  auto files = (*writer)->Finish();
  ASSERT_TRUE(files.ok()) << files.status();
  ASSERT_EQ(files->size(), 4u);  // 2 + 2 + 1 tensors, then the index
  EXPECT_EQ((*files)[0].name, "model-00001-of-00003.safetensors");
  EXPECT_EQ((*files)[3].name, "model.safetensors.index.json");
  EXPECT_FALSE(std::filesystem::exists(dir_ + "/model.safetensors"));
  auto checkpoint = model::Checkpoint::Open(dir_);
  ASSERT_TRUE(checkpoint.ok()) << checkpoint.status();
  for (int i = 0; i < 5; ++i) {
    EXPECT_TRUE(torch::equal(*(*checkpoint)->Load(decls[i].name, torch::kFloat32), tensors[i]));
  }
  EXPECT_EQ((*checkpoint)->FileOf("t4"), dir_ + "/model-00003-of-00003.safetensors");
}

TEST(WeightCodecTest, FakeQuantizedWeightsComeBackBitForBit) {
  torch::manual_seed(3);
  const torch::Tensor w = torch::randn({48, 64});
  for (int bits : {2, 3, 4, 6, 8}) {
    for (int64_t group : {int64_t{-1}, int64_t{16}}) {
      for (bool mse : {false, true}) {
        for (auto dtype : {torch::kFloat32, torch::kBFloat16}) {
          quant::WeightQuantSettings settings{bits, group, mse};
          auto q = quant::QuantizeWeightWithScales(w.to(dtype), settings);
          ASSERT_TRUE(q.ok()) << q.status();
          auto packed = PackQuantizedWeight(q->values, q->scales, bits);
          ASSERT_TRUE(packed.ok()) << packed.status();
          EXPECT_EQ(packed->size(1), PackedRowBytes(64, bits));
          auto back = UnpackQuantizedWeight(*packed, q->scales, bits, 64, dtype);
          ASSERT_TRUE(back.ok()) << back.status();
          EXPECT_TRUE(torch::equal(*back, q->values))
              << bits << " bits, group " << group << ", mse " << mse;
        }
      }
    }
  }
}

TEST(WeightCodecTest, RefusesAWeightOffItsGrid) {
  const torch::Tensor w = torch::randn({8, 32});
  auto q = quant::QuantizeWeightWithScales(w, {4, -1, false});
  ASSERT_TRUE(q.ok());
  torch::Tensor changed = q->values.clone();
  changed[2][5] += 0.3f * q->scales[2][0].item<float>();
  auto packed = PackQuantizedWeight(changed, q->scales, 4);
  EXPECT_EQ(packed.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_NE(packed.status().message().find("grid"), std::string::npos);
}

}  // namespace
}  // namespace quantd::exporter
