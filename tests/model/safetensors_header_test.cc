#include "worker/model/safetensors_header.h"

#include <random>
#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/model/safetensors_writer.h"

namespace quantd::model {
namespace {

using testing::AssembleSafetensors;
using testing::BuildSafetensors;
using ::testing::HasSubstr;
using testing::RawTensor;

absl::StatusOr<SafetensorsHeader> Parse(const std::string& file) {
  return ParseSafetensorsHeader(reinterpret_cast<const uint8_t*>(file.data()), file.size(),
                                "mem.safetensors");
}

std::string ValidFile() {
  return BuildSafetensors({{"a", "F32", {2, 3}, std::string(24, '\1')},
                           {"b", "BF16", {4}, std::string(8, '\2')},
                           {"c", "I64", {1}, std::string(8, '\3')}});
}

TEST(SafetensorsHeaderTest, ParsesValidFile) {
  const std::string file = ValidFile();
  auto header = Parse(file);
  ASSERT_TRUE(header.ok()) << header.status();
  ASSERT_EQ(header->tensors.size(), 3u);
  EXPECT_EQ(header->tensors[0].name, "a");
  EXPECT_EQ(header->tensors[0].dtype, StDType::kF32);
  EXPECT_EQ(header->tensors[0].shape, (std::vector<int64_t>{2, 3}));
  EXPECT_EQ(header->tensors[1].dtype, StDType::kBF16);
  EXPECT_EQ(header->tensors[1].begin, 24u);
  EXPECT_EQ(header->tensors[1].end, 32u);
  EXPECT_EQ(header->tensors[2].dtype, StDType::kI64);
  EXPECT_EQ(header->data_size, 40u);
  EXPECT_EQ(header->data_offset + header->data_size, file.size());
}

TEST(SafetensorsHeaderTest, ReadsMetadataAndEmptyTensors) {
  const std::string file = AssembleSafetensors(
      R"({"__metadata__":{"format":"pt"},"e":{"dtype":"F16","shape":[0,4],"data_offsets":[0,0]},)"
      R"("f":{"dtype":"F16","shape":[],"data_offsets":[0,2]}})",
      "xy");
  auto header = Parse(file);
  ASSERT_TRUE(header.ok()) << header.status();
  EXPECT_EQ(header->metadata.at("format"), "pt");
  EXPECT_EQ(header->tensors.size(), 2u);
}

struct BrokenCase {
  const char* what;
  std::string file;
  const char* message;  // expected substring of the error
};

std::vector<BrokenCase> BrokenCorpus() {
  const std::string f32_6 = std::string(24, '\0');
  auto one = [](const std::string& entry, const std::string& data) {
    return AssembleSafetensors("{\"t\":" + entry + "}", data);
  };
  std::string huge_len(8, '\0');
  huge_len[6] = 0x7f;  // header length far beyond anything
  std::string valid = ValidFile();
  return {
      {"empty file", "", "shorter than the 8-byte"},
      {"five bytes", "\x01\x02\x03\x04\x05", "shorter than the 8-byte"},
      {"header beyond file", AssembleSafetensors("{}", "").substr(0, 9), "truncated"},
      {"huge header length", huge_len + "{}", "exceeds"},
      {"not json", AssembleSafetensors("{\"t\":", ""), "not valid JSON"},
      {"json array", AssembleSafetensors("[1,2]", ""), "not a JSON object"},
      {"entry not object", one("3", ""), "tensor 't'"},
      {"unknown dtype", one(R"({"dtype":"F33","shape":[1],"data_offsets":[0,4]})", "abcd"),
       "unknown dtype \"F33\""},
      {"missing dtype", one(R"({"shape":[1],"data_offsets":[0,4]})", "abcd"), "dtype"},
      {"negative dim", one(R"({"dtype":"F32","shape":[-1],"data_offsets":[0,4]})", "abcd"),
       "non-negative"},
      {"float dim", one(R"({"dtype":"F32","shape":[1.5],"data_offsets":[0,4]})", "abcd"),
       "non-negative"},
      {"shape overflow",
       one(R"({"dtype":"F32","shape":[4294967296,4294967296,4],"data_offsets":[0,4]})", "abcd"),
       "too large"},
      {"one offset", one(R"({"dtype":"F32","shape":[1],"data_offsets":[0]})", "abcd"),
       "data_offsets"},
      {"reversed offsets", one(R"({"dtype":"F32","shape":[1],"data_offsets":[4,0]})", "abcd"),
       "end before"},
      {"truncated data", one(R"({"dtype":"F32","shape":[6],"data_offsets":[0,24]})", "abcd"),
       "past the data section"},
      {"size mismatch", one(R"({"dtype":"F32","shape":[2],"data_offsets":[0,4]})", "abcd"),
       "need 8"},
      {"overlap",
       AssembleSafetensors(R"({"x":{"dtype":"F32","shape":[4],"data_offsets":[0,16]},)"
                           R"("y":{"dtype":"F32","shape":[4],"data_offsets":[8,24]}})",
                           f32_6),
       "overlaps tensor 'x'"},
      {"bad metadata", AssembleSafetensors(R"({"__metadata__":{"k":1}})", ""), "not a string"},
      {"cut in data", valid.substr(0, valid.size() - 3), "past the data section"},
  };
}

TEST(SafetensorsHeaderTest, BrokenCorpusGivesClearErrors) {
  for (const auto& c : BrokenCorpus()) {
    auto header = Parse(c.file);
    ASSERT_FALSE(header.ok()) << c.what;
    EXPECT_THAT(std::string(header.status().message()), HasSubstr(c.message)) << c.what;
    EXPECT_THAT(std::string(header.status().message()), HasSubstr("mem.safetensors")) << c.what;
  }
}

// Random byte flips and truncations of a valid file must give a status, never a crash.
TEST(SafetensorsHeaderTest, MutatedFilesNeverCrash) {
  const std::string valid = ValidFile();
  std::mt19937 rng(7);
  int rejected = 0;
  for (int round = 0; round < 3000; ++round) {
    std::string file = valid;
    const int flips = 1 + static_cast<int>(rng() % 4);
    for (int i = 0; i < flips; ++i) file[rng() % file.size()] = static_cast<char>(rng());
    if (rng() % 3 == 0) file.resize(rng() % file.size());
    auto header = Parse(file);
    if (!header.ok()) {
      ++rejected;
      continue;
    }
    for (const auto& t : header->tensors) {
      EXPECT_LE(t.end, header->data_size);
      EXPECT_LE(t.begin, t.end);
    }
  }
  EXPECT_GT(rejected, 1000);
}

}  // namespace
}  // namespace quantd::model
