#include "worker/cli/model_flags.h"

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "worker/export/artifact_format.h"
#include "worker/export/artifact_reader.h"

namespace quantd::cli {

std::set<std::string> ModelFlagNames() {
  return {"model", "dtype", "device", "output", "streamed_blocks"};
}

absl::StatusOr<model::LoadOptions> LoadOptionsFromArgs(const Args& args) {
  model::LoadOptions options;
  const std::string dtype = args.Get("dtype", "float32");
  if (dtype == "float32") {
    options.dtype = torch::kFloat32;
  } else if (dtype == "bfloat16") {
    options.dtype = torch::kBFloat16;
  } else if (dtype == "float16") {
    options.dtype = torch::kFloat16;
  } else {
    return absl::InvalidArgumentError(
        absl::StrCat("--dtype must be float32, bfloat16 or float16, got \"", dtype, "\""));
  }
  const std::string device = args.Get("device", "cpu");
  try {
    options.device = torch::Device(device);
  } catch (const std::exception&) {
    return absl::InvalidArgumentError(absl::StrCat("--device \"", device, "\" is not a device"));
  }
  if (options.device.is_cuda() && !torch::cuda::is_available()) {
    return absl::InvalidArgumentError(
        absl::StrCat("--device ", device, ": no CUDA device is available"));
  }
  if (!options.device.is_cpu() && !options.device.is_cuda()) {
    return absl::InvalidArgumentError("--device must be cpu or cuda[:N]");
  }
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
