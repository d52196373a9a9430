// libFuzzer target for the safetensors header parser: any input must give either an error or
// a header whose every entry lies inside the data section, without overlaps.
//   cmake --build BUILD --target safetensors_header_fuzzer   (needs clang)
//   BUILD/tests/model/fuzz/safetensors_header_fuzzer -max_total_time=60 CORPUS_DIR
#include <cstdint>
#include <cstdlib>

#include "worker/model/safetensors_header.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  auto header = quantd::model::ParseSafetensorsHeader(data, size, "fuzz");
  if (!header.ok()) return 0;
  if (header->data_offset + header->data_size != size) std::abort();
  for (const auto& t : header->tensors) {
    if (t.begin > t.end || t.end > header->data_size) std::abort();
    uint64_t elements = 1;
    for (int64_t d : t.shape) elements *= static_cast<uint64_t>(d);
    if (elements * quantd::model::StDTypeSize(t.dtype) != t.end - t.begin) std::abort();
  }
  return 0;
}
