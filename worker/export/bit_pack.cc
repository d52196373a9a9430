#include "worker/export/bit_pack.h"

#include <cstring>

namespace quantd::exporter {

void PackSignedBits(const int8_t* values, int64_t rows, int64_t cols, int bits, uint8_t* packed) {
  const int64_t row_bytes = PackedRowBytes(cols, bits);
  const uint32_t mask = (1u << bits) - 1;
  for (int64_t r = 0; r < rows; ++r) {
    const int8_t* in = values + r * cols;
    uint8_t* out = packed + r * row_bytes;
    if (bits == 8) {
      std::memcpy(out, in, static_cast<size_t>(cols));
      continue;
    }
    std::memset(out, 0, static_cast<size_t>(row_bytes));
    if (bits == 4) {
      for (int64_t i = 0; i < cols; ++i) {
        out[i / 2] |= static_cast<uint8_t>((static_cast<uint32_t>(in[i]) & 0xf) << (4 * (i % 2)));
      }
      continue;
    }
    uint64_t bit = 0;
    for (int64_t i = 0; i < cols; ++i, bit += bits) {
      const uint32_t field = (static_cast<uint32_t>(in[i]) & mask) << (bit % 8);
      out[bit / 8] |= static_cast<uint8_t>(field);
      if ((bit % 8) + bits > 8) out[bit / 8 + 1] |= static_cast<uint8_t>(field >> 8);
    }
  }
}

void UnpackSignedBits(const uint8_t* packed, int64_t rows, int64_t cols, int bits, int8_t* values) {
  const int64_t row_bytes = PackedRowBytes(cols, bits);
  const uint32_t mask = (1u << bits) - 1;
  const uint32_t sign = 1u << (bits - 1);
  for (int64_t r = 0; r < rows; ++r) {
    const uint8_t* in = packed + r * row_bytes;
    int8_t* out = values + r * cols;
    if (bits == 8) {
      std::memcpy(out, in, static_cast<size_t>(cols));
      continue;
    }
    uint64_t bit = 0;
    for (int64_t i = 0; i < cols; ++i, bit += bits) {
      uint32_t word = in[bit / 8];
      if ((bit % 8) + bits > 8) word |= static_cast<uint32_t>(in[bit / 8 + 1]) << 8;
      const uint32_t field = (word >> (bit % 8)) & mask;
      out[i] = static_cast<int8_t>(static_cast<int32_t>(field ^ sign) - static_cast<int32_t>(sign));
    }
  }
}

}  // namespace quantd::exporter
