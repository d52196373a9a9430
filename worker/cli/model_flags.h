// Flags shared by the sub-commands that load a model: --model, --dtype, --device, --output,
// --streamed_blocks.
#ifndef QUANTD_WORKER_CLI_MODEL_FLAGS_H_
#define QUANTD_WORKER_CLI_MODEL_FLAGS_H_

#include <memory>
#include <optional>
#include <set>
#include <string>

#include "absl/status/statusor.h"
#include "worker/cli/args.h"
#include "worker/model/llama.h"
#include "worker/quant/prefix_cache.h"

namespace quantd::cli {

// The names of the shared flags, to merge into a command's known set.
std::set<std::string> ModelFlagNames();

// --dtype (default float32), --device (auto|cpu|cuda|cuda:N, default auto: the first visible
// GPU, else the CPU, as for jobs) and --streamed_blocks (default 0: the last N blocks stay in
// host memory and are streamed to the device, for a model larger than it); INVALID_ARGUMENT for
// unknown values or a CUDA device on a machine without one.
absl::StatusOr<model::LoadOptions> LoadOptionsFromArgs(const Args& args);

// A model to run: a Hugging Face folder, or an export (worker/export: detected by its
// quant_config.json), rebuilt quantized with its prefix KV cache. For an export, --dtype
// defaults to the dtype it was exported in (what reproduces the job's numbers).
struct RunnableModel {
  std::unique_ptr<model::LlamaModel> model;
  std::optional<quant::PrefixCache> prefix;  // exports with a prefix only
  bool is_export = false;
};
absl::StatusOr<RunnableModel> LoadModelFromArgs(const std::string& dir, const Args& args);

// --output: "text" (default) or "json"; sets *json.
absl::Status OutputFormatFromArgs(const Args& args, bool* json);

}  // namespace quantd::cli

#endif  // QUANTD_WORKER_CLI_MODEL_FLAGS_H_
