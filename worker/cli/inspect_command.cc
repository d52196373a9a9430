#include <ostream>

#include "worker/cli/commands.h"
#include "worker/cli/model_flags.h"
#include "worker/export/inspect.h"

namespace quantd::cli {
namespace {

absl::Status Inspect(const std::vector<std::string>& given, std::ostream& out, bool* usage) {
  *usage = true;
  std::vector<std::string> argv = given;
  std::string dir;
  if (!argv.empty() && argv[0].rfind("--", 0) != 0) {  // `inspect DIR` as well as --model DIR
    dir = argv[0];
    argv.erase(argv.begin());
  }
  auto args = Args::Parse(argv, {"model", "output"});
  if (!args.ok()) return args.status();
  if (dir.empty()) {
    dir = args->Get("model", "");
    if (dir.empty()) return absl::InvalidArgumentError("expected EXPORT_DIR (or --model DIR)");
  }
  bool json = false;
  if (auto s = OutputFormatFromArgs(*args, &json); !s.ok()) return s;
  *usage = false;
  auto summary = exporter::InspectArtifact(dir);
  if (!summary.ok()) return summary.status();
  out << (json ? summary->dump() + "\n" : exporter::FormatInspection(*summary));
  return absl::OkStatus();
}

}  // namespace

int RunInspect(const std::vector<std::string>& args, std::ostream& out, std::ostream& err) {
  return RunCommandBody("inspect", "EXPORT_DIR|--model DIR [--output text|json]", Inspect, args,
                        out, err);
}

}  // namespace quantd::cli
