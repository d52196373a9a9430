#include "client/quantctl/output.h"

#include <algorithm>
#include <cstdio>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "nlohmann/json.hpp"
#include "proto/spec/spec_file.h"
#include "yaml-cpp/yaml.h"

namespace quantd::quantctl {
namespace {

void EmitYaml(const nlohmann::json& value, YAML::Emitter& out) {
  if (value.is_object()) {
    out << YAML::BeginMap;
    for (const auto& [key, item] : value.items()) {
      out << YAML::Key << key << YAML::Value;
      EmitYaml(item, out);
    }
    out << YAML::EndMap;
  } else if (value.is_array()) {
    out << YAML::BeginSeq;
    for (const auto& item : value) EmitYaml(item, out);
    out << YAML::EndSeq;
  } else if (value.is_string()) {
    out << value.get<std::string>();
  } else if (value.is_boolean()) {
    out << value.get<bool>();
  } else if (value.is_number_integer()) {
    out << value.get<int64_t>();
  } else if (value.is_number()) {
    out << value.get<double>();
  } else {
    out << YAML::Null;
  }
}

}  // namespace

absl::StatusOr<OutputFormat> ParseOutputFormat(const std::string& name) {
  if (name == "table") return OutputFormat::kTable;
  if (name == "json") return OutputFormat::kJson;
  if (name == "yaml") return OutputFormat::kYaml;
  return absl::InvalidArgumentError("--output must be table, json or yaml, got \"" + name + "\"");
}

std::string FormatMessage(const google::protobuf::Message& message, OutputFormat format) {
  const std::string json = ToJson(message, /*pretty=*/true);
  if (format != OutputFormat::kYaml) return json + "\n";
  YAML::Emitter out;
  out.SetDoublePrecision(15);
  EmitYaml(nlohmann::json::parse(json), out);
  return std::string(out.c_str()) + "\n";
}

std::string FormatJobTable(const std::vector<v1::Job>& jobs) {
  std::vector<std::vector<std::string>> rows = {
      {"JOB_ID", "OWNER", "STATE", "PHASE", "PROGRESS", "PRIO", "MODEL", "WORKER", "REASON"}};
  for (const v1::Job& job : jobs) {
    std::string reason = job.pending_reason();
    if (job.state() == v1::JOB_STATE_FAILED) {
      reason = ShortName(job.failure().reason()) + ": " + job.failure().message();
    }
    rows.push_back({job.job_id(), job.owner(), ShortName(job.state()), ShortName(job.phase()),
                    absl::StrFormat("%3.0f%%", 100 * job.progress().fraction()),
                    absl::StrCat(job.spec().priority()), job.spec().model().name(),
                    job.worker_id().empty() ? "-" : job.worker_id(),
                    reason.empty() ? "-" : reason});
  }
  std::vector<size_t> widths(rows[0].size(), 0);
  for (auto& row : rows) {
    for (size_t i = 0; i < row.size(); ++i) {
      row[i] = format::Printable(row[i]);  // names and reasons come from users and workers
      widths[i] = std::max(widths[i], row[i].size());
    }
  }
  std::string out;
  for (const auto& row : rows) {
    for (size_t i = 0; i < row.size(); ++i) {
      out += row[i];
      if (i + 1 < row.size()) out += std::string(widths[i] - row[i].size() + 2, ' ');
    }
    out += "\n";
  }
  return out;
}

}  // namespace quantd::quantctl
