// Opens an export folder (artifact_format.h), checks it, and rebuilds the quantized model.
//
// VerifyArtifact checks, in this order, and fails naming the file at fault:
//   quant_config.json parses and holds known settings (INVALID_ARGUMENT);
//   manifest.json exists and parses (NOT_FOUND: the export never finished / INVALID_ARGUMENT);
//   config.json is a valid Llama config;
//   model and prefix safetensors files parse (DATA_LOSS for truncation) and hold exactly the
//   tensors quant_config.json and config.json imply, with their dtypes and shapes
//   (INVALID_ARGUMENT, naming the tensor and what was expected);
//   every file the manifest lists has its recorded size and SHA-256 (DATA_LOSS).
// LoadArtifact then unpacks the weights, restores rotation's online Hadamards, the quantizers
// with their static scales and the full-precision prefix KV cache: the model computes what the
// exporting job's model computed. Thread-safe (no shared state).
#ifndef QUANTD_WORKER_EXPORT_ARTIFACT_READER_H_
#define QUANTD_WORKER_EXPORT_ARTIFACT_READER_H_

#include <torch/torch.h>

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "nlohmann/json.hpp"
#include "worker/export/safetensors_writer.h"
#include "worker/model/config.h"
#include "worker/model/llama.h"
#include "worker/quant/prefix_cache.h"

namespace quantd::exporter {

// quant_config.json, parsed.
struct QuantConfig {
  torch::ScalarType dtype = torch::kFloat32;
  bool tie_word_embeddings = false;
  int weight_bits = 16;
  int64_t weight_group_size = -1;
  int activation_bits = 16;
  bool activation_dynamic = true;
  float activation_clip = 1.0f;
  int k_bits = 16, v_bits = 16;
  int64_t kv_group_size = 0;
  bool kv_dynamic = true;
  bool rotated = false;
  std::optional<int64_t> down_hadamard_n, qk_hadamard_n;  // the online Hadamard orders
  nlohmann::json down_hadamard, qk_hadamard;              // their recorded factors
  bool has_prefix = false;
  std::vector<int32_t> prefix_ids;
  int32_t bos_id = -1;
  bool prefix_embeddings = false;
  nlohmann::json json;  // the whole file
};

// INVALID_ARGUMENT naming quant_config.json and the field.
absl::StatusOr<QuantConfig> ParseQuantConfig(const nlohmann::json& json);

// The tensors of model.safetensors (all shards) and of prefix.safetensors that `quant` and
// `config` imply, in the order an export writes them.
std::vector<TensorDecl> ExpectedModelTensors(const model::LlamaConfig& config,
                                             const QuantConfig& quant);
std::vector<TensorDecl> ExpectedPrefixTensors(const model::LlamaConfig& config,
                                              const QuantConfig& quant);

struct ArtifactSummary {
  QuantConfig quant;
  model::LlamaConfig config;
  nlohmann::json manifest;
  uint64_t total_bytes = 0;  // every file the manifest lists
};

absl::StatusOr<ArtifactSummary> VerifyArtifact(const std::string& dir);

struct LoadedArtifact {
  std::unique_ptr<model::LlamaModel> model;
  std::optional<quant::PrefixCache> prefix;
  ArtifactSummary summary;
};

// Verifies, then loads onto options.device in options.dtype (pass the artifact's dtype,
// QuantConfig::dtype, to compute what the job computed); the last options.streamed_blocks
// blocks stay in host memory and are streamed (model/block_streaming.h).
absl::StatusOr<LoadedArtifact> LoadArtifact(const std::string& dir,
                                            const model::LoadOptions& options);

// The dtype an artifact was exported in (reads quant_config.json only).
absl::StatusOr<torch::ScalarType> ArtifactDType(const std::string& dir);

}  // namespace quantd::exporter

#endif  // QUANTD_WORKER_EXPORT_ARTIFACT_READER_H_
