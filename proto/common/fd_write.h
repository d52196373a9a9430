// Writing a whole buffer to a file descriptor, for the writers that must see every failure
// (a full disk) instead of a stream that swallows it.
#ifndef QUANTD_PROTO_COMMON_FD_WRITE_H_
#define QUANTD_PROTO_COMMON_FD_WRITE_H_

#include <cstddef>

namespace quantd {

// Writes all `size` bytes of `data` to `fd`, retrying short writes and EINTR. Returns 0, or the
// errno of the write that failed (EIO for a write that wrote nothing without an error).
int WriteAll(int fd, const void* data, size_t size);

}  // namespace quantd

#endif  // QUANTD_PROTO_COMMON_FD_WRITE_H_
