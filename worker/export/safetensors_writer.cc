#include "worker/export/safetensors_writer.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <set>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "nlohmann/json.hpp"
#include "proto/common/fd_write.h"
#include "proto/common/status_macros.h"

namespace quantd::exporter {
namespace {

absl::Status IoError(const std::string& path, const char* what) {
  return absl::InternalError(absl::StrCat(path, ": ", what, ": ", std::strerror(errno)));
}

absl::Status WriteAll(int fd, const std::string& path, const void* data, uint64_t size) {
  const int error = quantd::WriteAll(fd, data, size);
  if (error == 0) return absl::OkStatus();
  errno = error;
  return IoError(path, "write failed");
}

absl::Status SyncAndClose(int fd, const std::string& path) {
  if (::fsync(fd) != 0) {
    ::close(fd);
    return IoError(path, "fsync failed");
  }
  if (::close(fd) != 0) return IoError(path, "close failed");
  return absl::OkStatus();
}

}  // namespace

uint64_t TensorDecl::bytes() const {
  uint64_t count = 1;
  for (int64_t d : shape) count *= static_cast<uint64_t>(d);
  return count * model::StDTypeSize(dtype);
}

absl::StatusOr<std::unique_ptr<SafetensorsWriter>> SafetensorsWriter::Create(
    const std::string& path, std::vector<TensorDecl> tensors,
    const std::map<std::string, std::string>& metadata) {
  nlohmann::json header = nlohmann::json::object();
  if (!metadata.empty()) header["__metadata__"] = metadata;
  std::set<std::string> names;
  uint64_t offset = 0;
  for (const TensorDecl& t : tensors) {
    if (t.name.empty() || t.name == "__metadata__" || !names.insert(t.name).second) {
      return absl::InvalidArgumentError(
          absl::StrCat(path, ": empty, reserved or duplicate tensor name '", t.name, "'"));
    }
    for (int64_t d : t.shape) {
      if (d < 0)
        return absl::InvalidArgumentError(absl::StrCat(path, ": negative dim in ", t.name));
    }
    header[t.name] = {{"dtype", std::string(model::StDTypeName(t.dtype))},
                      {"shape", t.shape},
                      {"data_offsets", {offset, offset + t.bytes()}}};
    offset += t.bytes();
  }
  std::string text = header.dump();
  while ((8 + text.size()) % 8 != 0) text.push_back(' ');
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) return IoError(path, "cannot create");
  std::unique_ptr<SafetensorsWriter> writer(new SafetensorsWriter(path, fd, std::move(tensors)));
  uint8_t length[8];
  for (int i = 0; i < 8; ++i) length[i] = static_cast<uint8_t>(uint64_t{text.size()} >> (8 * i));
  RETURN_IF_ERROR(writer->WriteBytes(length, 8));
  RETURN_IF_ERROR(writer->WriteBytes(text.data(), text.size()));
  return writer;
}

SafetensorsWriter::~SafetensorsWriter() {
  if (fd_ >= 0) ::close(fd_);
}

absl::Status SafetensorsWriter::WriteBytes(const void* data, uint64_t size) {
  RETURN_IF_ERROR(WriteAll(fd_, path_, data, size));
  hash_.Update(data, size);
  written_ += size;
  return absl::OkStatus();
}

absl::Status SafetensorsWriter::Write(const std::string& name, const void* data, uint64_t size) {
  if (next_ >= tensors_.size() || tensors_[next_].name != name) {
    return absl::FailedPreconditionError(
        absl::StrCat(path_, ": tensor '", name, "' written out of its declared order"));
  }
  if (tensors_[next_].bytes() != size) {
    return absl::FailedPreconditionError(absl::StrCat(
        path_, ": tensor '", name, "' has ", size, " bytes, declared ", tensors_[next_].bytes()));
  }
  ++next_;
  return WriteBytes(data, size);
}

absl::StatusOr<WrittenFile> SafetensorsWriter::Finish() {
  if (next_ != tensors_.size()) {
    return absl::FailedPreconditionError(absl::StrCat(path_, ": finished after ", next_, " of ",
                                                      tensors_.size(), " declared tensors"));
  }
  const int fd = fd_;
  fd_ = -1;
  RETURN_IF_ERROR(SyncAndClose(fd, path_));
  WrittenFile out;
  out.name = std::filesystem::path(path_).filename().string();
  out.bytes = written_;
  out.sha256 = hash_.HexDigest();
  return out;
}

absl::StatusOr<std::unique_ptr<ShardedSafetensorsWriter>> ShardedSafetensorsWriter::Create(
    const std::string& folder, const std::string& stem, std::vector<TensorDecl> tensors,
    uint64_t max_shard_bytes, const std::map<std::string, std::string>& metadata) {
  std::unique_ptr<ShardedSafetensorsWriter> writer(new ShardedSafetensorsWriter());
  writer->folder_ = folder;
  writer->metadata_ = metadata;
  uint64_t in_shard = 0;
  for (TensorDecl& t : tensors) {
    if (writer->shards_.empty() || (in_shard > 0 && in_shard + t.bytes() > max_shard_bytes)) {
      writer->shards_.emplace_back();
      in_shard = 0;
    }
    in_shard += t.bytes();
    writer->shards_.back().push_back(std::move(t));
  }
  if (writer->shards_.empty()) writer->shards_.emplace_back();
  const size_t n = writer->shards_.size();
  if (n == 1) {
    writer->shard_names_.push_back(stem + ".safetensors");
  } else {
    for (size_t i = 0; i < n; ++i) {
      writer->shard_names_.push_back(
          absl::StrFormat("%s-%05d-of-%05d.safetensors", stem, i + 1, n));
    }
    writer->index_name_ = stem + ".safetensors.index.json";
  }
  RETURN_IF_ERROR(writer->OpenShard(0));
  return writer;
}

absl::Status ShardedSafetensorsWriter::OpenShard(size_t shard) {
  current_ = shard;
  written_in_shard_ = 0;
  ASSIGN_OR_RETURN(writer_, SafetensorsWriter::Create(folder_ + "/" + shard_names_[shard],
                                                      shards_[shard], metadata_));
  return absl::OkStatus();
}

absl::Status ShardedSafetensorsWriter::Write(const std::string& name, const void* data,
                                             uint64_t size) {
  while (writer_ != nullptr && written_in_shard_ == shards_[current_].size()) {
    ASSIGN_OR_RETURN(WrittenFile file, writer_->Finish());
    done_.push_back(file);
    writer_.reset();
    if (current_ + 1 < shards_.size()) RETURN_IF_ERROR(OpenShard(current_ + 1));
  }
  if (writer_ == nullptr) {
    return absl::FailedPreconditionError(
        absl::StrCat(folder_, ": tensor '", name, "' written after every declared tensor"));
  }
  RETURN_IF_ERROR(writer_->Write(name, data, size));
  ++written_in_shard_;
  return absl::OkStatus();
}

absl::StatusOr<std::vector<WrittenFile>> ShardedSafetensorsWriter::Finish() {
  while (writer_ != nullptr) {
    if (written_in_shard_ != shards_[current_].size() || current_ + 1 < shards_.size()) {
      return absl::FailedPreconditionError(
          absl::StrCat(folder_, ": finished before every declared tensor was written"));
    }
    ASSIGN_OR_RETURN(WrittenFile file, writer_->Finish());
    done_.push_back(file);
    writer_.reset();
  }
  if (!index_name_.empty()) {
    nlohmann::json index;
    uint64_t total = 0;
    index["weight_map"] = nlohmann::json::object();
    for (size_t s = 0; s < shards_.size(); ++s) {
      for (const TensorDecl& t : shards_[s]) {
        index["weight_map"][t.name] = shard_names_[s];
        total += t.bytes();
      }
    }
    index["metadata"] = {{"total_size", total}};
    ASSIGN_OR_RETURN(WrittenFile file,
                     WriteTextFile(folder_ + "/" + index_name_, index.dump(2) + "\n"));
    done_.push_back(file);
  }
  return done_;
}

absl::StatusOr<WrittenFile> WriteTextFile(const std::string& path, const std::string& text) {
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) return IoError(path, "cannot create");
  if (auto status = WriteAll(fd, path, text.data(), text.size()); !status.ok()) {
    ::close(fd);
    return status;
  }
  RETURN_IF_ERROR(SyncAndClose(fd, path));
  Sha256 hash;
  hash.Update(text.data(), text.size());
  WrittenFile out;
  out.name = std::filesystem::path(path).filename().string();
  out.bytes = text.size();
  out.sha256 = hash.HexDigest();
  return out;
}

}  // namespace quantd::exporter
