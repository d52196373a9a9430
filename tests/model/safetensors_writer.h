// Test helper: writes safetensors files (valid ones, or raw bytes for the broken-file corpus).
#ifndef QUANTD_TESTS_MODEL_SAFETENSORS_WRITER_H_
#define QUANTD_TESTS_MODEL_SAFETENSORS_WRITER_H_

#include <cstdint>
#include <cstring>
#include <fstream>
#include <string>
#include <vector>

#include "nlohmann/json.hpp"

namespace quantd::model::testing {

struct RawTensor {
  std::string name;
  std::string dtype;  // "F32", "F16", "BF16", "I64", ...
  std::vector<int64_t> shape;
  std::string bytes;
};

// Header length (8 bytes LE) + header + data.
inline std::string AssembleSafetensors(const std::string& header, const std::string& data) {
  std::string out(8, '\0');
  uint64_t n = header.size();
  for (int i = 0; i < 8; ++i) out[i] = static_cast<char>((n >> (8 * i)) & 0xff);
  return out + header + data;
}

// A well-formed file holding `tensors` back to back; `pad_to` pads the header with spaces to
// a multiple (8 keeps the data aligned; 1 leaves it wherever it falls).
inline std::string BuildSafetensors(const std::vector<RawTensor>& tensors, size_t pad_to = 8) {
  nlohmann::json header = nlohmann::json::object();
  std::string data;
  for (const auto& t : tensors) {
    header[t.name] = {{"dtype", t.dtype},
                      {"shape", t.shape},
                      {"data_offsets", {data.size(), data.size() + t.bytes.size()}}};
    data += t.bytes;
  }
  std::string text = header.dump();
  while (text.size() % pad_to != 0) text += ' ';
  return AssembleSafetensors(text, data);
}

inline void WriteFile(const std::string& path, const std::string& content) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(content.data(), static_cast<std::streamsize>(content.size()));
}

template <typename T>
std::string BytesOf(const std::vector<T>& values) {
  std::string bytes(values.size() * sizeof(T), '\0');
  std::memcpy(bytes.data(), values.data(), bytes.size());
  return bytes;
}

}  // namespace quantd::model::testing

#endif  // QUANTD_TESTS_MODEL_SAFETENSORS_WRITER_H_
