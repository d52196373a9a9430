#include "worker/export/job_export.h"

#include <torch/version.h>

#include <cmath>
#include <ctime>
#include <filesystem>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "proto/common/status_macros.h"
#include "proto/common/version.h"
#include "proto/common/writable_folder.h"
#include "proto/spec/spec_file.h"
#include "worker/export/artifact_format.h"
#include "worker/export/artifact_reader.h"
#include "worker/export/sha256.h"

namespace quantd::exporter {
namespace {

constexpr double kPerplexityTolerance = 1e-4;

std::string UtcNow() {
  const std::time_t now = std::time(nullptr);
  std::tm tm{};
  gmtime_r(&now, &tm);
  char buffer[32];
  std::strftime(buffer, sizeof(buffer), "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buffer;
}

std::string WindowId(const std::vector<int32_t>& window) {
  Sha256 hash;
  hash.Update(window.data(), window.size() * sizeof(int32_t));
  return hash.HexDigest().substr(0, 16);
}

absl::StatusOr<double> ShortPerplexity(model::LlamaModel& m, const quant::PrefixCache* prefix,
                                       const std::vector<std::vector<int32_t>>& windows,
                                       int64_t batch_size) {
  std::vector<int32_t> tokens;
  for (const auto& w : windows) tokens.insert(tokens.end(), w.begin(), w.end());
  quant::WindowEval options;
  options.seqlen = static_cast<int64_t>(windows[0].size());
  options.batch_size = std::max<int64_t>(1, batch_size);
  options.prefix = prefix;
  ASSIGN_OR_RETURN(quant::WindowPerplexity ppl, quant::EvaluateWindows(m, tokens, options));
  return ppl.perplexity;
}

}  // namespace

JobArtifact::JobArtifact(const v1::JobSpec& spec)
    : spec_(spec), start_(std::chrono::steady_clock::now()) {}

JobArtifact::~JobArtifact() {
  if (!staging_.empty() && !committed_) {
    std::error_code error;
    std::filesystem::remove_all(staging_, error);
  }
}

absl::Status JobArtifact::CheckDestination() const {
  if (!requested()) return absl::OkStatus();
  const std::string& dir = spec_.output_dir();
  std::error_code error;
  if (std::filesystem::exists(dir, error) &&
      !(std::filesystem::is_directory(dir, error) &&
        (std::filesystem::is_empty(dir, error) || IsReplaceableArtifactDir(dir)))) {
    return absl::FailedPreconditionError(
        absl::StrCat("output_dir: ", dir,
                     " exists and is neither empty nor an earlier export; not replacing it"));
  }
  // The export is staged beside the folder and renamed into place: its parent must be a
  // writable folder, checked now rather than after hours of work.
  std::filesystem::path target = std::filesystem::absolute(dir, error).lexically_normal();
  if (target.filename().empty()) target = target.parent_path();  // "out/" names "out"
  return CheckWritableFolder(target.parent_path().string(), "output_dir");
}

double JobArtifact::Seconds() const {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
}

absl::StatusOr<ValidationReport> JobArtifact::WriteAndValidate(
    const ArtifactModel& artifact, const std::vector<std::vector<int32_t>>& calibration,
    int64_t batch_size, uint64_t max_shard_bytes) {
  ValidationReport report;
  const std::string final_dir = spec_.output_dir();
  std::error_code error;
  const auto parent = std::filesystem::absolute(final_dir, error).parent_path();
  std::filesystem::create_directories(parent, error);
  if (error) {
    return absl::InternalError(
        absl::StrCat("export: cannot create ", parent.string(), ": ", error.message()));
  }
  staging_ = StagingDirFor(final_dir);
  std::filesystem::remove_all(staging_, error);  // left by an earlier attempt of this process
  const double before = Seconds();
  const auto write_start = std::chrono::steady_clock::now();
  ASSIGN_OR_RETURN(files_, WriteArtifactFiles(artifact, staging_, max_shard_bytes));

  nlohmann::json& m = manifest_;
  m["created_at"] = UtcNow();
  m["job"] = {{"spec", nlohmann::json::parse(ToJson(spec_, false), nullptr, false)},
              {"model_name", spec_.model().name()}};
  m["seeds"] = {{"calibration", spec_.calibration().seed()}, {"rotation", artifact.rotation.seed}};
  nlohmann::json windows = nlohmann::json::array();
  for (const auto& w : calibration) windows.push_back(WindowId(w));
  auto dataset_sha = Sha256OfFile(spec_.calibration().dataset_path());
  m["calibration"] = {{"dataset_path", spec_.calibration().dataset_path()},
                      {"dataset_sha256", dataset_sha.ok() ? *dataset_sha : std::string()},
                      {"documents", spec_.calibration().documents()},
                      {"window_tokens", calibration.empty() ? 0 : calibration[0].size()},
                      {"window_ids", windows},
                      {"window_id_definition",
                       "first 16 hex digits of the SHA-256 of the window's int32 token ids "
                       "(little-endian)"}};
  ASSIGN_OR_RETURN(m["input_model"], DescribeInputModel(artifact.source_model_dir));
  m["versions"] = {{"quantd", VersionString()},
                   {"libtorch", absl::StrCat(TORCH_VERSION_MAJOR, ".", TORCH_VERSION_MINOR, ".",
                                             TORCH_VERSION_PATCH)}};
  report.write_seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - write_start).count();
  m["timings"] = {{"job_seconds_before_export", before},
                  {"export_write_seconds", report.write_seconds}};
  RETURN_IF_ERROR(WriteManifest(staging_, m, files_));

  const auto validate_start = std::chrono::steady_clock::now();
  model::LoadOptions options;
  options.dtype = artifact.model->dtype();
  options.device = artifact.model->device();
  // Next to a model that streams blocks, the check copy streams all of its blocks: it only runs
  // two windows, and the device has no room for a second resident model.
  if (artifact.model->streamed_blocks() > 0) {
    options.streamed_blocks = static_cast<int>(artifact.model->blocks.size());
  }
  auto loaded = LoadArtifact(staging_, options);
  if (!loaded.ok()) {
    return absl::InternalError(absl::StrCat("export validation: re-opening the export failed: ",
                                            loaded.status().message()));
  }
  report.artifact_bytes = loaded->summary.total_bytes;
  report.input_bytes = m["input_model"].value("safetensors_bytes", uint64_t{0});
  if (!calibration.empty()) {
    std::vector<std::vector<int32_t>> check(
        calibration.begin(), calibration.begin() + std::min<size_t>(2, calibration.size()));
    ASSIGN_OR_RETURN(report.in_memory_ppl,
                     ShortPerplexity(const_cast<model::LlamaModel&>(*artifact.model),
                                     artifact.prefix, check, batch_size));
    ASSIGN_OR_RETURN(report.reloaded_ppl,
                     ShortPerplexity(*loaded->model, loaded->prefix ? &*loaded->prefix : nullptr,
                                     check, batch_size));
    const double relative =
        std::abs(report.reloaded_ppl - report.in_memory_ppl) / std::abs(report.in_memory_ppl);
    if (!(relative <= kPerplexityTolerance)) {
      return absl::InternalError(absl::StrFormat(
          "export validation: the reloaded model's perplexity %.6f differs from the in-memory "
          "model's %.6f (relative %.2e > %.0e) on %d calibration windows",
          report.reloaded_ppl, report.in_memory_ppl, relative, kPerplexityTolerance, check.size()));
    }
  }
  report.validate_seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - validate_start).count();
  m["timings"]["export_validate_seconds"] = report.validate_seconds;
  m["validation"] = {{"windows", std::min<size_t>(2, calibration.size())},
                     {"in_memory_perplexity", report.in_memory_ppl},
                     {"reloaded_perplexity", report.reloaded_ppl}};
  return report;
}

absl::StatusOr<std::string> JobArtifact::Commit(
    const google::protobuf::Map<std::string, double>& metrics) {
  if (staging_.empty() || manifest_.is_null()) {
    return absl::FailedPreconditionError("export: nothing staged to commit");
  }
  manifest_["metrics"] = nlohmann::json::object();
  for (const auto& [name, value] : metrics) manifest_["metrics"][name] = value;
  manifest_["timings"]["job_seconds_total"] = Seconds();
  RETURN_IF_ERROR(WriteManifest(staging_, manifest_, files_));
  RETURN_IF_ERROR(CommitArtifact(staging_, spec_.output_dir()));
  committed_ = true;
  std::error_code error;
  const auto absolute = std::filesystem::absolute(spec_.output_dir(), error);
  return error ? spec_.output_dir() : absolute.lexically_normal().string();
}

}  // namespace quantd::exporter
