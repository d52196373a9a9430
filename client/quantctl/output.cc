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

std::string StripPrefix(const std::string& name, const std::string& prefix) {
  return name.rfind(prefix, 0) == 0 ? name.substr(prefix.size()) : name;
}

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

std::string ShortName(v1::JobState state) {
  return StripPrefix(v1::JobState_Name(state), "JOB_STATE_");
}

std::string ShortName(v1::Phase phase) {
  return absl::AsciiStrToLower(StripPrefix(v1::Phase_Name(phase), "PHASE_"));
}

std::string ShortName(v1::FailureReason reason) {
  return StripPrefix(v1::FailureReason_Name(reason), "FAILURE_REASON_");
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
  for (const auto& row : rows) {
    for (size_t i = 0; i < row.size(); ++i) widths[i] = std::max(widths[i], row[i].size());
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

std::string FormatEventLine(const v1::JobEvent& event) {
  std::string line = absl::StrCat("#", event.sequence(), " ");
  switch (event.kind_case()) {
    case v1::JobEvent::kStateChange: {
      const auto& change = event.state_change();
      absl::StrAppend(&line, "state ", ShortName(change.from()), " -> ", ShortName(change.to()));
      if (!change.worker_id().empty()) absl::StrAppend(&line, " on ", change.worker_id());
      if (change.has_failure()) {
        absl::StrAppend(&line, " (", ShortName(change.failure().reason()), ": ",
                        change.failure().message(), ")");
      }
      break;
    }
    case v1::JobEvent::kPhaseChange:
      absl::StrAppend(&line, "phase ", ShortName(event.phase_change().phase()), " ",
                      event.phase_change().detail());
      break;
    case v1::JobEvent::kLoss: {
      const auto& loss = event.loss();
      absl::StrAppend(&line, "loss ", ShortName(loss.phase()));
      if (loss.block() >= 0) absl::StrAppend(&line, " block ", loss.block());
      absl::StrAppend(&line, " epoch ", loss.epoch(), " step ", loss.step(), " ", loss.split(),
                      absl::StrFormat(" %.6g", loss.loss()));
      std::vector<std::pair<std::string, double>> parts(loss.components().begin(),
                                                        loss.components().end());
      std::sort(parts.begin(), parts.end());
      for (const auto& [name, value] : parts) {
        absl::StrAppend(&line, absl::StrFormat(" %s=%.4g", name, value));
      }
      if (loss.learning_rate() > 0) {
        absl::StrAppend(&line, absl::StrFormat(" lr=%.3g", loss.learning_rate()));
      }
      break;
    }
    case v1::JobEvent::kMetric:
      absl::StrAppend(&line, "metric ", event.metric().name(), " = ",
                      absl::StrFormat("%.6g", event.metric().value()));
      break;
    case v1::JobEvent::kLog:
      absl::StrAppend(&line, "log ", event.log().level(), " ", event.log().message());
      break;
    case v1::JobEvent::kProgress: {
      const auto& progress = event.progress();
      absl::StrAppend(&line, absl::StrFormat("progress %.1f%%", 100 * progress.fraction()));
      if (progress.eta_seconds() >= 0) {
        absl::StrAppend(&line, absl::StrFormat(" eta %.0fs", progress.eta_seconds()));
      }
      if (!progress.detail().empty()) absl::StrAppend(&line, " ", progress.detail());
      break;
    }
    case v1::JobEvent::kArtifact:
      absl::StrAppend(&line, "artifact ", event.artifact().kind(), " ", event.artifact().path(),
                      " (", event.artifact().size_bytes(), " bytes)");
      break;
    case v1::JobEvent::kResult:
      absl::StrAppend(&line, "result ", event.result().metrics_size(), " metrics");
      if (!event.result().artifact_path().empty()) {
        absl::StrAppend(&line, ", artifact ", event.result().artifact_path());
      }
      break;
    case v1::JobEvent::KIND_NOT_SET:
      absl::StrAppend(&line, "(empty event)");
      break;
  }
  return line;
}

}  // namespace quantd::quantctl
