// SHA-256 (FIPS 180-4), streaming, for the checksums of an export (no external dependency).
// Not thread-safe per instance; independent instances may be used concurrently.
#ifndef QUANTD_WORKER_EXPORT_SHA256_H_
#define QUANTD_WORKER_EXPORT_SHA256_H_

#include <array>
#include <cstddef>
#include <cstdint>
#include <string>

#include "absl/status/statusor.h"

namespace quantd::exporter {

class Sha256 {
 public:
  Sha256();
  void Update(const void* data, size_t size);
  // The digest as 64 lowercase hex digits. The object must not be updated afterwards.
  std::string HexDigest();

 private:
  void Block(const uint8_t* block);

  std::array<uint32_t, 8> state_;
  std::array<uint8_t, 64> buffer_{};
  size_t buffered_ = 0;
  uint64_t total_bytes_ = 0;
};

// The SHA-256 of a whole file, read in chunks. NOT_FOUND / INTERNAL (naming the file).
absl::StatusOr<std::string> Sha256OfFile(const std::string& path);

}  // namespace quantd::exporter

#endif  // QUANTD_WORKER_EXPORT_SHA256_H_
