// Writes a rotated, quantized and calibrated LlamaModel (plus its prefix KV cache) as an export
// folder (artifact_format.h), tensor by tensor.
//
// The steps, so that a job can validate the staged folder while its model is still in memory:
//   1. WriteArtifactFiles(model, staging_dir) — every file but the manifest;
//   2. WriteManifest(staging_dir, manifest, files) — adds "files" (size and SHA-256 of each);
//   3. CommitArtifact(staging_dir, final_dir) — renames the folder into place.
// A quantized weight must lie on its quantization grid (weight == scales · q exactly, as
// QuantizeModel leaves it); otherwise export fails (INTERNAL) rather than write something that
// does not reproduce. Settings must be uniform over layers (as QuantizeModel makes them).
#ifndef QUANTD_WORKER_EXPORT_ARTIFACT_WRITER_H_
#define QUANTD_WORKER_EXPORT_ARTIFACT_WRITER_H_

#include <torch/torch.h>

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "nlohmann/json.hpp"
#include "worker/export/safetensors_writer.h"
#include "worker/model/llama.h"
#include "worker/quant/prefix_cache.h"
#include "worker/quant/rotation.h"

namespace quantd::exporter {

struct ArtifactModel {
  const model::LlamaModel* model = nullptr;    // not owned; its blocks hold QuantLinear layers
  const quant::PrefixCache* prefix = nullptr;  // optional, not owned
  torch::Tensor prefix_embeddings;             // optional [P, hidden]: a trained prefix
  bool rotated = false;
  quant::RotationOptions rotation;  // recorded (its matrices are folded into the weights)
  std::string source_model_dir;     // config.json and tokenizer files are copied from here
};

inline constexpr uint64_t kDefaultMaxShardBytes = uint64_t{4} << 30;

// Creates `staging_dir` (its parent must exist; the folder itself must not) and writes every
// file but manifest.json. FAILED_PRECONDITION for a model export cannot represent (a layer
// neither QuantLinear nor DenseLinear, a bias, per-layer settings that differ, a weight off its
// grid), NOT_FOUND for a missing config.json, INTERNAL for I/O errors (naming the file).
absl::StatusOr<std::vector<WrittenFile>> WriteArtifactFiles(
    const ArtifactModel& artifact, const std::string& staging_dir,
    uint64_t max_shard_bytes = kDefaultMaxShardBytes);

// Writes `manifest` plus "files": [{"name", "bytes", "sha256"}, ...] as manifest.json.
absl::Status WriteManifest(const std::string& staging_dir, nlohmann::json manifest,
                           const std::vector<WrittenFile>& files);

// Renames `staging_dir` to `final_dir`. An earlier export at `final_dir` (a folder holding only
// what its manifest lists, IsReplaceableArtifactDir) or an empty folder is replaced, in one
// atomic exchange where the file system allows it (so a kill never leaves final_dir missing);
// any other existing path is left alone (FAILED_PRECONDITION).
absl::Status CommitArtifact(const std::string& staging_dir, const std::string& final_dir);

// The staging name of `final_dir`: "<final_dir>.tmp-<pid>".
std::string StagingDirFor(const std::string& final_dir);

// Input model files (config.json, *.safetensors, index, tokenizer files) with size and SHA-256,
// for the manifest; and their total safetensors bytes (the size an export is compared with).
absl::StatusOr<nlohmann::json> DescribeInputModel(const std::string& model_dir);

}  // namespace quantd::exporter

#endif  // QUANTD_WORKER_EXPORT_ARTIFACT_WRITER_H_
