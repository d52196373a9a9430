// Packing of signed 4-bit integers, two per byte (the storage format of 4-bit exports).
//
// Bit order: element 2i goes to the low nibble of byte i, element 2i+1 to the high nibble,
// each in two's complement (-8..7). An odd count leaves the last high nibble zero.
// Values outside -8..7 are a caller error (only their low four bits are kept).
#ifndef QUANTD_KERNELS_INT4_PACK_H_
#define QUANTD_KERNELS_INT4_PACK_H_

#include <cstdint>

#include "kernels/device.h"

namespace quantd::kernels {

// Bytes needed for `count` packed values.
inline int64_t PackedInt4Bytes(int64_t count) { return (count + 1) / 2; }

// CPU. `packed` has PackedInt4Bytes(count) bytes.
void PackInt4(const int8_t* values, int64_t count, uint8_t* packed);
void UnpackInt4(const uint8_t* packed, int64_t count, int8_t* values);

// CUDA, on device pointers, enqueued on `stream` (a cudaStream_t; nullptr = the default
// stream). Returns an empty string on success, otherwise the CUDA error text. Without a
// CUDA build they return "built without CUDA".
const char* PackInt4Cuda(const int8_t* values, int64_t count, uint8_t* packed, void* stream);
const char* UnpackInt4Cuda(const uint8_t* packed, int64_t count, int8_t* values, void* stream);

}  // namespace quantd::kernels

#endif  // QUANTD_KERNELS_INT4_PACK_H_
