// Streaming writers of safetensors files (the format of worker/model/safetensors_header.h).
//
// Every tensor is declared up front (name, dtype, shape), so the header is written first; the
// data then follows tensor by tensor in declaration order, each Write() handing over one whole
// tensor, so a model never has to sit in memory as one buffer. The header JSON is padded with
// spaces to a multiple of 8 bytes; data ranges are contiguous in declaration order. A SHA-256
// of the file is computed while it is written. Not thread-safe.
//
// ShardedSafetensorsWriter splits the declared tensors over several files when they exceed
// `max_shard_bytes` ("<stem>-00001-of-00003.safetensors", ..., plus "<stem>.safetensors.index.json"
// in Hugging Face's format: {"metadata": {"total_size": N}, "weight_map": {tensor: file}});
// otherwise it writes the single file "<stem>.safetensors". A tensor larger than the limit gets
// a shard of its own.
#ifndef QUANTD_WORKER_EXPORT_SAFETENSORS_WRITER_H_
#define QUANTD_WORKER_EXPORT_SAFETENSORS_WRITER_H_

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "worker/export/sha256.h"
#include "worker/model/safetensors_header.h"

namespace quantd::exporter {

struct TensorDecl {
  std::string name;
  model::StDType dtype = model::StDType::kF32;
  std::vector<int64_t> shape;
  uint64_t bytes() const;
};

struct WrittenFile {
  std::string name;  // file name inside its folder
  uint64_t bytes = 0;
  std::string sha256;
};

class SafetensorsWriter {
 public:
  // Creates (truncates) `path` and writes the header. INVALID_ARGUMENT for duplicate or empty
  // names or negative dims, INTERNAL for I/O errors (naming the file).
  static absl::StatusOr<std::unique_ptr<SafetensorsWriter>> Create(
      const std::string& path, std::vector<TensorDecl> tensors,
      const std::map<std::string, std::string>& metadata = {});
  ~SafetensorsWriter();

  // The next declared tensor's bytes: FAILED_PRECONDITION when `name` is not the next one or
  // `size` differs from its declared size.
  absl::Status Write(const std::string& name, const void* data, uint64_t size);
  // Every tensor must have been written; flushes and fsyncs, then closes the file.
  absl::StatusOr<WrittenFile> Finish();

 private:
  SafetensorsWriter(std::string path, int fd, std::vector<TensorDecl> tensors)
      : path_(std::move(path)), fd_(fd), tensors_(std::move(tensors)) {}
  absl::Status WriteBytes(const void* data, uint64_t size);

  std::string path_;
  int fd_ = -1;
  std::vector<TensorDecl> tensors_;
  size_t next_ = 0;
  uint64_t written_ = 0;
  Sha256 hash_;
};

class ShardedSafetensorsWriter {
 public:
  // Plans the shards of `tensors` (declaration order kept) under `folder`/`stem`*.
  static absl::StatusOr<std::unique_ptr<ShardedSafetensorsWriter>> Create(
      const std::string& folder, const std::string& stem, std::vector<TensorDecl> tensors,
      uint64_t max_shard_bytes, const std::map<std::string, std::string>& metadata = {});

  // As SafetensorsWriter::Write; opens the next shard when the previous one is complete.
  absl::Status Write(const std::string& name, const void* data, uint64_t size);
  // The files written (shards, then the index when sharded).
  absl::StatusOr<std::vector<WrittenFile>> Finish();

 private:
  ShardedSafetensorsWriter() = default;
  absl::Status OpenShard(size_t shard);

  std::string folder_;
  std::map<std::string, std::string> metadata_;
  std::vector<std::vector<TensorDecl>> shards_;
  std::vector<std::string> shard_names_;
  std::string index_name_;  // empty when not sharded
  size_t current_ = 0;
  size_t written_in_shard_ = 0;
  std::unique_ptr<SafetensorsWriter> writer_;
  std::vector<WrittenFile> done_;
};

// Writes `text` to `path` (truncating), fsyncs it, and returns its size and SHA-256.
absl::StatusOr<WrittenFile> WriteTextFile(const std::string& path, const std::string& text);

}  // namespace quantd::exporter

#endif  // QUANTD_WORKER_EXPORT_SAFETENSORS_WRITER_H_
