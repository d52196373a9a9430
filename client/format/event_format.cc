#include "client/format/event_format.h"

#include <algorithm>
#include <utility>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace quantd::format {
namespace {

std::string StripPrefix(const std::string& name, const std::string& prefix) {
  return name.rfind(prefix, 0) == 0 ? name.substr(prefix.size()) : name;
}

}  // namespace

std::string Printable(const std::string& text, bool keep_newlines) {
  std::string out;
  out.reserve(text.size());
  for (size_t i = 0; i < text.size(); ++i) {
    const unsigned char c = static_cast<unsigned char>(text[i]);
    const unsigned char next = i + 1 < text.size() ? static_cast<unsigned char>(text[i + 1]) : 0;
    if (c == '\t' || (c == '\n' && keep_newlines)) {
      out += static_cast<char>(c);
    } else if (c == '\n') {
      out += "\\n";
    } else if (c < 0x20 || c == 0x7f) {
      out += absl::StrFormat("\\x%02x", c);
    } else if (c == 0xc2 && next >= 0x80 && next <= 0x9f) {  // U+0080..U+009F
      out += absl::StrFormat("\\u%04x", next);
      ++i;
    } else {
      out += static_cast<char>(c);
    }
  }
  return out;
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
  return Printable(line);
}

}  // namespace quantd::format
