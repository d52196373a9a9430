// Limits on what users and workers send quantd, in one place. Each exists so that one
// request cannot make quantd hold (or send back) far more than a real one: a real spec is
// under 2 KiB, a real job id is "j-000123". A request beyond a limit is refused with
// INVALID_ARGUMENT naming the limit, and nothing of it is stored.
#ifndef QUANTD_SERVER_CORE_LIMITS_H_
#define QUANTD_SERVER_CORE_LIMITS_H_

#include <cstddef>
#include <cstdint>

namespace quantd {

// SubmitJob: the spec as submitted, serialized (JobSpec::ByteSizeLong()). Every job's spec
// is kept in memory, stored, and sent back by GetJob, ListJobs and to the worker.
inline constexpr size_t kMaxSpecBytes = 16 * 1024;
// SubmitJob: request_id, in bytes.
inline constexpr size_t kMaxRequestIdLength = 128;
// CancelJob: the reason, in bytes; it is stored in the job's events and failure message.
inline constexpr size_t kMaxCancelReasonBytes = 1024;
// The job_id of GetJob, CancelJob, WatchJob and GetJobMetrics, in bytes (longer ones
// cannot name a job, and echoing them in NOT_FOUND would bloat the error).
inline constexpr size_t kMaxJobIdLength = 128;

// Hello: worker_id and instance_id, in bytes (every job the worker runs carries the id).
inline constexpr size_t kMaxWorkerIdLength = 128;
// Hello and Heartbeat: devices of one worker. Every placement pass looks at each of them.
inline constexpr int kMaxWorkerDevices = 1024;
// JobEvents.first_worker_sequence: at most this far beyond the job's stored worker sequence
// + 1. A gap means events the scheduler never stored (e.g. lost with --store_sync=normal
// on a power loss); a jump beyond this is not a resend but a broken or hostile worker.
inline constexpr int64_t kMaxWorkerSequenceGap = int64_t{1} << 20;
// JobEvents.first_worker_sequence: the largest accepted at all (so that sequence
// arithmetic never overflows).
inline constexpr int64_t kMaxWorkerSequence = int64_t{1} << 62;

}  // namespace quantd

#endif  // QUANTD_SERVER_CORE_LIMITS_H_
