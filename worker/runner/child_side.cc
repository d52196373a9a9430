#include "worker/runner/child_side.h"

#include <signal.h>

#include "google/protobuf/util/time_util.h"
#include "worker/runner/event_pipe.h"
#include "worker/runner/job_process.h"

namespace quantd::runner {
namespace {

CancellationToken* g_token = nullptr;

extern "C" void CancelOnSignal(int) {
  if (g_token != nullptr) g_token->Cancel();
}

}  // namespace

absl::Status PipeEventSink::Emit(const v1::JobEvent& event) {
  if (!event.has_time()) {
    v1::JobEvent stamped = event;
    *stamped.mutable_time() = google::protobuf::util::TimeUtil::GetCurrentTime();
    std::lock_guard<std::mutex> lock(mutex_);
    return WriteFramedEvent(fd_, stamped);
  }
  std::lock_guard<std::mutex> lock(mutex_);
  return WriteFramedEvent(fd_, event);
}

void CancelOnTermination(CancellationToken* token) {
  g_token = token;
  struct sigaction action = {};
  action.sa_handler = CancelOnSignal;
  sigemptyset(&action.sa_mask);
  sigaction(SIGTERM, &action, nullptr);
  sigaction(SIGINT, &action, nullptr);
  signal(SIGPIPE, SIG_IGN);  // a vanished parent shows up as a failed Emit instead
}

int ReportFailureAndExitCode(EventSink& sink, v1::FailureReason reason,
                             const std::string& message) {
  v1::JobEvent event;
  auto* change = event.mutable_state_change();
  change->set_from(v1::JOB_STATE_RUNNING);
  change->set_to(v1::JOB_STATE_FAILED);
  change->mutable_failure()->set_reason(reason);
  change->mutable_failure()->set_message(message);
  (void)sink.Emit(event);
  return kChildFailed;
}

}  // namespace quantd::runner
