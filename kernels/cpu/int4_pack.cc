#include "kernels/int4_pack.h"

namespace quantd::kernels {

void PackInt4(const int8_t* values, int64_t count, uint8_t* packed) {
  const int64_t pairs = count / 2;
  for (int64_t i = 0; i < pairs; ++i) {
    const uint8_t low = static_cast<uint8_t>(values[2 * i]) & 0x0f;
    const uint8_t high = static_cast<uint8_t>(values[2 * i + 1]) & 0x0f;
    packed[i] = static_cast<uint8_t>(low | (high << 4));
  }
  if (count % 2 != 0) packed[pairs] = static_cast<uint8_t>(values[count - 1]) & 0x0f;
}

void UnpackInt4(const uint8_t* packed, int64_t count, int8_t* values) {
  for (int64_t i = 0; i < count; ++i) {
    const uint8_t nibble = (i % 2 == 0) ? (packed[i / 2] & 0x0f) : (packed[i / 2] >> 4);
    // Sign-extend the 4-bit two's complement value.
    values[i] = static_cast<int8_t>((nibble ^ 0x08) - 0x08);
  }
}

}  // namespace quantd::kernels
