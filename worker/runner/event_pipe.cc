#include "worker/runner/event_pipe.h"

#include <errno.h>
#include <unistd.h>

#include <cstring>

#include "absl/strings/str_cat.h"

namespace quantd::runner {
namespace {

void AppendVarint(uint64_t value, std::string* out) {
  while (value >= 0x80) {
    out->push_back(static_cast<char>((value & 0x7f) | 0x80));
    value >>= 7;
  }
  out->push_back(static_cast<char>(value));
}

// Decodes a varint at the start of `data`. Returns bytes used, 0 when incomplete, or -1
// when the varint is longer than 10 bytes.
int DecodeVarint(const std::string& data, uint64_t* value) {
  *value = 0;
  for (size_t i = 0; i < data.size() && i < 10; ++i) {
    const uint8_t byte = static_cast<uint8_t>(data[i]);
    *value |= static_cast<uint64_t>(byte & 0x7f) << (7 * i);
    if ((byte & 0x80) == 0) return static_cast<int>(i + 1);
  }
  return data.size() >= 10 ? -1 : 0;
}

}  // namespace

void AppendFramedEvent(const v1::JobEvent& event, std::string* out) {
  const std::string bytes = event.SerializeAsString();
  AppendVarint(bytes.size(), out);
  out->append(bytes);
}

absl::Status WriteFramedEvent(int fd, const v1::JobEvent& event) {
  std::string frame;
  AppendFramedEvent(event, &frame);
  size_t written = 0;
  while (written < frame.size()) {
    const ssize_t n = ::write(fd, frame.data() + written, frame.size() - written);
    if (n < 0) {
      if (errno == EINTR) continue;
      return absl::InternalError(absl::StrCat("event pipe write failed: ", std::strerror(errno)));
    }
    written += static_cast<size_t>(n);
  }
  return absl::OkStatus();
}

absl::Status EventPipeReader::Feed(const char* data, size_t size,
                                   std::vector<v1::JobEvent>* events) {
  buffer_.append(data, size);
  size_t consumed = 0;
  while (true) {
    const std::string rest = buffer_.substr(consumed, 10);
    uint64_t length = 0;
    const int header = DecodeVarint(rest, &length);
    if (header < 0 || length > kMaxEventBytes) {
      return absl::DataLossError(absl::StrCat("event pipe: bad frame length ", length));
    }
    if (header == 0 || buffer_.size() - consumed < header + length) break;
    v1::JobEvent event;
    if (!event.ParseFromArray(buffer_.data() + consumed + header, static_cast<int>(length))) {
      return absl::DataLossError("event pipe: a frame is not a JobEvent");
    }
    events->push_back(std::move(event));
    consumed += header + length;
  }
  buffer_.erase(0, consumed);
  return absl::OkStatus();
}

}  // namespace quantd::runner
