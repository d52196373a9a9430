// Parser and validator for the header of a .safetensors file (no LibTorch, fuzzable).
//
// File layout: 8 bytes little-endian header length N, N bytes of JSON, then the data section.
// The JSON maps tensor names to {"dtype", "shape", "data_offsets": [begin, end]} (offsets
// relative to the data section) plus an optional "__metadata__" string-to-string map.
//
// ParseSafetensorsHeader accepts only files whose every entry is consistent: known dtype,
// non-negative shape, byte range inside the data section, size == product(shape) * dtype
// size, no two ranges overlapping. Every error is INVALID_ARGUMENT (or DATA_LOSS for a
// truncated file) and names `label` (normally the file path) and the tensor. Never crashes on
// any input. Thread-safe (pure function).
#ifndef QUANTD_WORKER_MODEL_SAFETENSORS_HEADER_H_
#define QUANTD_WORKER_MODEL_SAFETENSORS_HEADER_H_

#include <cstddef>
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace quantd::model {

// Every dtype of the safetensors format. Only kF32, kF16 and kBF16 can be loaded as model
// weights; the others are recognised so that a checkpoint carrying them still parses.
enum class StDType { kF64, kF32, kF16, kBF16, kI64, kI32, kI16, kI8, kU8, kBool, kF8E4M3, kF8E5M2 };

// The name used in the header ("F32", ...).
absl::string_view StDTypeName(StDType dtype);
// Size of one element in bytes.
size_t StDTypeSize(StDType dtype);
// True for F32, F16 and BF16.
bool IsFloatWeightDType(StDType dtype);

struct SafetensorsEntry {
  std::string name;
  StDType dtype = StDType::kF32;
  std::vector<int64_t> shape;
  uint64_t begin = 0;  // byte offsets relative to the start of the data section
  uint64_t end = 0;
};

struct SafetensorsHeader {
  uint64_t data_offset = 0;               // absolute offset of the data section in the file (8 + N)
  uint64_t data_size = 0;                 // bytes of the data section
  std::vector<SafetensorsEntry> tensors;  // in name order
  std::map<std::string, std::string> metadata;
};

// Largest header accepted (100 MB, the limit the reference implementation uses).
inline constexpr uint64_t kMaxSafetensorsHeaderBytes = 100u << 20;

// Parses the first `size` bytes of a safetensors file starting at `file`.
absl::StatusOr<SafetensorsHeader> ParseSafetensorsHeader(const uint8_t* file, size_t size,
                                                         absl::string_view label);

}  // namespace quantd::model

#endif  // QUANTD_WORKER_MODEL_SAFETENSORS_HEADER_H_
