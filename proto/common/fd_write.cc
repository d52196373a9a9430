#include "proto/common/fd_write.h"

#include <unistd.h>

#include <cerrno>

namespace quantd {

int WriteAll(int fd, const void* data, size_t size) {
  const char* p = static_cast<const char*>(data);
  while (size > 0) {
    const ssize_t written = ::write(fd, p, size);
    if (written < 0 && errno == EINTR) continue;
    if (written <= 0) return written < 0 ? errno : EIO;
    p += written;
    size -= static_cast<size_t>(written);
  }
  return 0;
}

}  // namespace quantd
