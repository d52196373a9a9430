// The CUDA kernels' 16-byte (or 8-byte) stores stay single vector stores in the PTX nvcc makes.
// Written as plain struct copies, they came out as one store per element in many
// instantiations (FWHT rows of 16–2048 elements, every Kronecker size), costing bf16 FWHT rows
// of 1024 more than half their bandwidth on an H100 (kernels/cuda/PERFORMANCE.md). No GPU needed.
#include <fstream>
#include <map>
#include <regex>
#include <sstream>
#include <string>

#include "gtest/gtest.h"

namespace {

// Kernel entry (mangled name) -> its PTX body, from every file nvcc wrote.
std::map<std::string, std::string> KernelPtx() {
  std::map<std::string, std::string> kernels;
  std::stringstream paths(QUANTD_KERNEL_PTX_FILES);  // '|'-separated
  for (std::string path; std::getline(paths, path, '|');) {
    std::ifstream in(path);
    EXPECT_TRUE(in.good()) << "cannot read " << path;
    std::stringstream text;
    text << in.rdbuf();
    const std::string ptx = text.str();
    size_t at = ptx.find(".entry ");
    while (at != std::string::npos) {
      const size_t name_end = ptx.find('(', at);
      const size_t next = ptx.find(".entry ", name_end);
      kernels[ptx.substr(at + 7, name_end - at - 7)] = ptx.substr(name_end, next - name_end);
      at = next;
    }
  }
  return kernels;
}

// Bytes of one element of the mangled type name ("f", "6__half", "13__nv_bfloat16").
int ElementBytes(const std::string& type) { return type == "f" ? 4 : 2; }

constexpr int Min(int a, int b) { return a < b ? a : b; }
constexpr int Max(int a, int b) { return a > b ? a : b; }

// kernels/cuda/fwht.cu's FwhtShape: the bytes of one thread's vector store for rows of 2^log_n.
int FwhtStoreBytes(int bytes, int log_n) {
  const int n = 1 << log_n;
  int min_registers = 1;
  while (min_registers * min_registers * 32 < n) min_registers *= 2;
  const int width = 16 / bytes;
  const int registers = Min(n, Max(2 * width, min_registers));
  return Min(width, registers) * bytes;
}

// A store of `bytes` (8 or 16) to global memory in one instruction (with or without a cache
// policy): st.global.v2/v4 of 32-bit words, or of 64-bit / 16-bit ones.
bool HasVectorStore(const std::string& body, int bytes) {
  static const std::regex k16("st\\.global(\\.wb)?\\.(v4\\.[usbf]32|v2\\.[usbf]64)");
  static const std::regex k8("st\\.global(\\.wb)?\\.(v2\\.[usbf]32|v4\\.[usbf]16)");
  return std::regex_search(body, bytes == 16 ? k16 : k8);
}

TEST(PtxVectorStoresTest, FwhtAndKroneckerStoresAreVectors) {
  const std::regex fwht("FwhtKernelI(f|6__half|13__nv_bfloat16)Li([0-9]+)E");
  const std::regex kronecker("KroneckerKernelI(f|6__half|13__nv_bfloat16)Li([0-9]+)ELi[0-9]+E");
  int fwht_checked = 0, kronecker_checked = 0;
  for (const auto& [name, body] : KernelPtx()) {
    std::smatch match;
    if (std::regex_search(name, match, fwht)) {
      const int bytes = FwhtStoreBytes(ElementBytes(match[1]), std::stoi(match[2]));
      if (bytes < 8) continue;  // 4 bytes or less: a scalar store is the vector
      ++fwht_checked;
      EXPECT_TRUE(HasVectorStore(body, bytes))
          << name << ": its " << bytes << "-byte stores were split";
    } else if (std::regex_search(name, match, kronecker)) {
      // Each thread of the mixing stores Min(4, p) consecutive elements.
      const int bytes = Min(4, 1 << std::stoi(match[2])) * ElementBytes(match[1]);
      if (bytes < 8) continue;
      ++kronecker_checked;
      EXPECT_TRUE(HasVectorStore(body, bytes))
          << name << ": its " << bytes << "-byte stores were split";
    }
  }
  // Every size of rows (2^1..2^15) and of Kronecker chunks (2^1..2^14, two block sizes), in
  // three types, less the 16-bit ones of 2 elements (4-byte stores).
  EXPECT_EQ(fwht_checked, 15 + 14 + 14);
  EXPECT_EQ(kronecker_checked, 2 * (14 + 13 + 13));
}

TEST(PtxVectorStoresTest, FakeQuantSegmentStoresAreVectors) {
  int checked = 0;
  for (const auto& [name, body] : KernelPtx()) {
    if (name.find("SegmentKernel") == std::string::npos ||
        name.find("LongSegmentKernel") != std::string::npos) {
      continue;
    }
    ++checked;
    EXPECT_TRUE(HasVectorStore(body, 16)) << name << ": its 16-byte stores were split";
  }
  EXPECT_EQ(checked, 6);  // three types, dynamic and static scales
}

}  // namespace
