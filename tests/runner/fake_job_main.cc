// A stand-in job process for the runner tests: behaves as argv[1] says.
//   succeed N    N progress events, a result, exit 0
//   fail         a reported USER_ERROR failure, exit 1
//   segfault     two events, a log line, then SIGSEGV
//   wait-cancel  progress until SIGTERM, then exit 3 (cancelled)
//   ignore-term  ignores SIGTERM and sleeps (needs SIGKILL)
//   garbage      writes bytes that are not a framed event, exit 0
//   exit7        a log line, exit 7 without reporting
#include <signal.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

#include "worker/runner/child_side.h"
#include "worker/runner/job_process.h"

using quantd::runner::PipeEventSink;

namespace {

quantd::v1::JobEvent Progress(double fraction) {
  quantd::v1::JobEvent event;
  event.mutable_progress()->set_fraction(fraction);
  return event;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 3) return 64;
  const std::string mode = argv[1];
  int fd = -1;
  for (int i = 1; i < argc; ++i) {
    if (std::strncmp(argv[i], "--event_fd=", 11) == 0) fd = std::atoi(argv[i] + 11);
  }
  PipeEventSink sink(fd);
  quantd::CancellationToken token;
  quantd::runner::CancelOnTermination(&token);

  if (mode == "succeed") {
    const int n = std::atoi(argv[2]);
    for (int i = 1; i <= n; ++i) (void)sink.Emit(Progress(static_cast<double>(i) / n));
    quantd::v1::JobEvent result;
    (*result.mutable_result()->mutable_metrics())["ppl"] = 4.117;
    (void)sink.Emit(result);
    return 0;
  }
  if (mode == "fail") {
    return quantd::runner::ReportFailureAndExitCode(sink, quantd::v1::FAILURE_REASON_USER_ERROR,
                                                    "calibration file not found");
  }
  if (mode == "segfault") {
    (void)sink.Emit(Progress(0.1));
    (void)sink.Emit(Progress(0.2));
    std::fprintf(stderr, "about to crash in block 3\n");
    std::fflush(stderr);
    raise(SIGSEGV);
    return 0;
  }
  if (mode == "wait-cancel") {
    (void)sink.Emit(Progress(0.0));
    while (!token.cancelled()) usleep(1000);
    return quantd::runner::kChildCancelled;
  }
  if (mode == "ignore-term") {
    signal(SIGTERM, SIG_IGN);
    (void)sink.Emit(Progress(0.0));
    while (true) pause();
  }
  if (mode == "garbage") {
    const char junk[] = "\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff";
    (void)!write(fd, junk, sizeof(junk));
    return 0;
  }
  if (mode == "exit7") {
    std::fprintf(stderr, "unexpected trouble\n");
    return 7;
  }
  return 64;
}
