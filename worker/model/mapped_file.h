// Read-only view of a whole file through mmap (MAP_PRIVATE: a caller that writes to the
// pages gets private copies; the file never changes).
//
// Owns the mapping; unmapped on destruction. Share it through std::shared_ptr so tensors that
// alias the bytes keep it alive. Thread-safe for concurrent reads.
#ifndef QUANTD_WORKER_MODEL_MAPPED_FILE_H_
#define QUANTD_WORKER_MODEL_MAPPED_FILE_H_

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

#include "absl/status/statusor.h"

namespace quantd::model {

class MappedFile {
 public:
  // NOT_FOUND when the file does not exist, FAILED_PRECONDITION when it is not a regular file,
  // INTERNAL when open/mmap fail otherwise. An empty file maps to size() == 0.
  static absl::StatusOr<std::shared_ptr<MappedFile>> Open(const std::string& path);

  ~MappedFile();
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;

  uint8_t* data() const { return data_; }
  size_t size() const { return size_; }
  const std::string& path() const { return path_; }

 private:
  MappedFile(std::string path, uint8_t* data, size_t size)
      : path_(std::move(path)), data_(data), size_(size) {}

  std::string path_;
  uint8_t* data_;
  size_t size_;
};

}  // namespace quantd::model

#endif  // QUANTD_WORKER_MODEL_MAPPED_FILE_H_
