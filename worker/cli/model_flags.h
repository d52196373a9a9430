// Flags shared by the sub-commands that load a model: --model, --dtype, --device, --output.
#ifndef QUANTD_WORKER_CLI_MODEL_FLAGS_H_
#define QUANTD_WORKER_CLI_MODEL_FLAGS_H_

#include <set>
#include <string>

#include "absl/status/statusor.h"
#include "worker/cli/args.h"
#include "worker/model/llama.h"

namespace quantd::cli {

// The names of the shared flags, to merge into a command's known set.
std::set<std::string> ModelFlagNames();

// --dtype (default float32) and --device (default cpu); INVALID_ARGUMENT for unknown values
// or a CUDA device on a machine without one.
absl::StatusOr<model::LoadOptions> LoadOptionsFromArgs(const Args& args);

// --output: "text" (default) or "json"; sets *json.
absl::Status OutputFormatFromArgs(const Args& args, bool* json);

}  // namespace quantd::cli

#endif  // QUANTD_WORKER_CLI_MODEL_FLAGS_H_
