// The export step of a QuantizeJob (RunJob), DESIGN.md §3 step 10, when spec.output_dir is set:
//   1. WriteAndValidate, while the job's quantized model is in memory: writes the folder under
//      its staging name, re-opens it (names, dtypes, shapes, sizes, SHA-256) and compares the
//      perplexity of the reloaded model with the in-memory model's on the first two
//      calibration windows (relative difference above 1e-4 fails);
//   2. Commit, at the end of the job: rewrites manifest.json with the final metrics and
//      timings and renames the folder into place, returning its path.
// Every failure is the job's INTERNAL failure (the caller maps it). An uncommitted staging
// folder is removed on destruction. Not thread-safe.
#ifndef QUANTD_WORKER_EXPORT_JOB_EXPORT_H_
#define QUANTD_WORKER_EXPORT_JOB_EXPORT_H_

#include <chrono>
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "nlohmann/json.hpp"
#include "quantd/v1/job.pb.h"
#include "worker/export/artifact_writer.h"

namespace quantd::exporter {

struct ValidationReport {
  double in_memory_ppl = 0;
  double reloaded_ppl = 0;
  uint64_t artifact_bytes = 0;
  uint64_t input_bytes = 0;  // the input model's safetensors
  double write_seconds = 0;
  double validate_seconds = 0;
};

class JobArtifact {
 public:
  // `spec` with defaults applied. The job's clock starts here.
  explicit JobArtifact(const v1::JobSpec& spec);
  ~JobArtifact();
  JobArtifact(const JobArtifact&) = delete;
  JobArtifact& operator=(const JobArtifact&) = delete;

  // True when the spec asks for an export (output_dir set).
  bool requested() const { return !spec_.output_dir().empty(); }

  // FAILED_PRECONDITION when output_dir is an existing path that an export may not replace
  // (neither an earlier export nor an empty folder), or its parent folder cannot be created or
  // written in, so a job can refuse before it starts.
  absl::Status CheckDestination() const;

  // `calibration`: the job's calibration windows (their ids go to the manifest; the first two
  // are the validation windows). `max_shard_bytes` as WriteArtifactFiles.
  absl::StatusOr<ValidationReport> WriteAndValidate(
      const ArtifactModel& artifact, const std::vector<std::vector<int32_t>>& calibration,
      int64_t batch_size, uint64_t max_shard_bytes = kDefaultMaxShardBytes);

  // FAILED_PRECONDITION when WriteAndValidate did not succeed first.
  absl::StatusOr<std::string> Commit(const google::protobuf::Map<std::string, double>& metrics);

 private:
  double Seconds() const;

  v1::JobSpec spec_;
  std::chrono::steady_clock::time_point start_;
  std::string staging_;
  std::vector<WrittenFile> files_;
  nlohmann::json manifest_;
  bool committed_ = false;
};

}  // namespace quantd::exporter

#endif  // QUANTD_WORKER_EXPORT_JOB_EXPORT_H_
