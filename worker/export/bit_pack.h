// Dense packing of signed b-bit integers (b = 2..8), the storage of low-bit weights in an export.
//
// Bit order: the values of one row form a little-endian bit stream. Value i occupies stream bits
// [i·b, (i+1)·b), least significant bit first, in b-bit two's complement; stream bit j is bit
// (j mod 8) of byte j / 8. A row takes ceil(cols·b / 8) bytes; unused high bits of its last byte
// are zero. For b = 4 this is kernels/int4_pack.h's order (value 2i in the low nibble of byte i,
// value 2i+1 in the high nibble); for b = 8 it is plain int8.
// Thread-safe (pure functions).
#ifndef QUANTD_WORKER_EXPORT_BIT_PACK_H_
#define QUANTD_WORKER_EXPORT_BIT_PACK_H_

#include <cstdint>

namespace quantd::exporter {

// Bytes of one packed row of `cols` values.
inline int64_t PackedRowBytes(int64_t cols, int bits) { return (cols * bits + 7) / 8; }

// Packs rows × cols values (row-major, each within [-2^(b-1), 2^(b-1) - 1]; only the low b bits
// of a value are kept) into rows × PackedRowBytes(cols, bits) bytes.
void PackSignedBits(const int8_t* values, int64_t rows, int64_t cols, int bits, uint8_t* packed);

// The inverse: sign-extends each b-bit field.
void UnpackSignedBits(const uint8_t* packed, int64_t rows, int64_t cols, int bits, int8_t* values);

}  // namespace quantd::exporter

#endif  // QUANTD_WORKER_EXPORT_BIT_PACK_H_
