#include "worker/cli/model_flags.h"

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "worker/export/artifact_format.h"
#include "worker/export/artifact_reader.h"
#include "worker/model/device_choice.h"
#include "worker/model/dtype_names.h"

namespace quantd::cli {

std::set<std::string> ModelFlagNames() {
  return {"model", "dtype", "device", "output", "streamed_blocks"};
}

absl::StatusOr<model::LoadOptions> LoadOptionsFromArgs(const Args& args) {
  model::LoadOptions options;
  const std::string dtype = args.Get("dtype", "float32");
  auto parsed = model::DTypeFromName(dtype);
  if (!parsed.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat("--dtype must be float32, bfloat16 or float16, got \"", dtype, "\""));
  }
  options.dtype = *parsed;
  auto device = model::ChooseDevice(args.Get("device", "auto"));
  if (!device.ok()) {
    return absl::InvalidArgumentError(absl::StrCat("--", device.status().message()));
  }
  options.device = *device;
  auto streamed = args.GetInt("streamed_blocks", 0, 0);
  if (!streamed.ok()) return streamed.status();
  options.streamed_blocks = static_cast<int>(*streamed);
  return options;
}

absl::StatusOr<RunnableModel> LoadModelFromArgs(const std::string& dir, const Args& args) {
  auto options = LoadOptionsFromArgs(args);
  if (!options.ok()) return options.status();
  RunnableModel out;
  if (!exporter::IsArtifactDir(dir)) {
    auto loaded = model::LlamaModel::Load(dir, *options);
    if (!loaded.ok()) return loaded.status();
    out.model = *std::move(loaded);
    return out;
  }
  out.is_export = true;
  if (!args.Has("dtype")) {
    auto dtype = exporter::ArtifactDType(dir);
    if (!dtype.ok()) return dtype.status();
    options->dtype = *dtype;
  }
  auto loaded = exporter::LoadArtifact(dir, *options);
  if (!loaded.ok()) return loaded.status();
  out.model = std::move(loaded->model);
  out.prefix = std::move(loaded->prefix);
  return out;
}

absl::Status OutputFormatFromArgs(const Args& args, bool* json) {
  const std::string output = args.Get("output", "text");
  if (output != "text" && output != "json") {
    return absl::InvalidArgumentError(
        absl::StrCat("--output must be text or json, got \"", output, "\""));
  }
  *json = output == "json";
  return absl::OkStatus();
}

}  // namespace quantd::cli
