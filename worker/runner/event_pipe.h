// The wire between a job process and its worker: JobEvents framed as
// <varint length><serialized JobEvent>, the protobuf "length-delimited" form.
//
// The writer is used by the child (one thread at a time); the reader by the parent, which
// feeds it whatever bytes the pipe gave and takes out complete events. A frame longer than
// kMaxEventBytes or bytes that do not parse are DATA_LOSS: the parent stops trusting the
// pipe instead of crashing.
#ifndef QUANTD_WORKER_RUNNER_EVENT_PIPE_H_
#define QUANTD_WORKER_RUNNER_EVENT_PIPE_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "quantd/v1/job.pb.h"

namespace quantd::runner {

inline constexpr size_t kMaxEventBytes = 16 << 20;

// Appends one framed event to `out`.
void AppendFramedEvent(const v1::JobEvent& event, std::string* out);

// Writes one framed event to `fd`, retrying on EINTR and short writes.
// INTERNAL with errno text when the pipe is closed or broken.
absl::Status WriteFramedEvent(int fd, const v1::JobEvent& event);

class EventPipeReader {
 public:
  // Adds bytes read from the pipe and moves every complete event into `events`.
  absl::Status Feed(const char* data, size_t size, std::vector<v1::JobEvent>* events);

  // Bytes of an incomplete frame still waiting for the rest.
  size_t pending_bytes() const { return buffer_.size(); }

 private:
  std::string buffer_;
};

}  // namespace quantd::runner

#endif  // QUANTD_WORKER_RUNNER_EVENT_PIPE_H_
