#include "worker/pipeline/run_job.h"

#include <cmath>
#include <filesystem>

#include "absl/strings/str_cat.h"
#include "proto/spec/defaults.h"
#include "proto/spec/validate.h"
#include "worker/eval/perplexity.h"
#include "worker/eval/token_stream.h"
#include "worker/model/llama.h"
#include "worker/model/tokenizer.h"
#include "worker/pipeline/progress_reporter.h"

namespace quantd::pipeline {
namespace {

// Fractions of the whole job each phase covers.
constexpr double kLoadEnd = 0.1;

RunJobOutcome Failed(v1::FailureReason reason, absl::Status status) {
  RunJobOutcome outcome;
  outcome.reason = reason;
  outcome.status = std::move(status);
  return outcome;
}

RunJobOutcome Cancelled() {
  return Failed(v1::FAILURE_REASON_CANCELLED, absl::CancelledError("cancelled"));
}

absl::Status EmitPhase(EventSink& sink, v1::Phase phase, const std::string& detail) {
  v1::JobEvent event;
  event.mutable_phase_change()->set_phase(phase);
  event.mutable_phase_change()->set_detail(detail);
  return sink.Emit(event);
}

absl::Status EmitLog(EventSink& sink, const std::string& level, const std::string& message) {
  v1::JobEvent event;
  event.mutable_log()->set_level(level);
  event.mutable_log()->set_message(message);
  return sink.Emit(event);
}

absl::Status EmitMetric(EventSink& sink, const std::string& name, double value) {
  v1::JobEvent event;
  event.mutable_metric()->set_name(name);
  event.mutable_metric()->set_value(value);
  return sink.Emit(event);
}

absl::StatusOr<torch::ScalarType> ComputeDtype(const std::string& name) {
  if (name.empty() || name == "float32") return torch::kFloat32;
  if (name == "bfloat16") return torch::kBFloat16;
  if (name == "float16") return torch::kFloat16;
  return absl::InvalidArgumentError("model.dtype: unsupported \"" + name + "\"");
}

bool AsksForQuantization(const v1::JobSpec& spec) {
  const auto& q = spec.quant();
  return q.wbits() < 16 || q.input_bits() < 16 || q.k_bits() < 16 || q.v_bits() < 16 ||
         spec.prefix().enabled() || spec.rotation().pre_rotate() || spec.training().epochs() > 0;
}

std::string DatasetName(const std::string& path) {
  return std::filesystem::path(path).filename().string();
}

}  // namespace

RunJobOutcome RunJob(const v1::JobSpec& original, const RunJobOptions& /*options*/,
                     EventSink& sink, CancellationToken& cancel) {
  v1::JobSpec spec = original;
  ApplyDefaults(&spec);
  if (auto status = ValidateSpec(spec); !status.ok()) {
    return Failed(v1::FAILURE_REASON_USER_ERROR, status);
  }

  // ---- load ----
  (void)EmitPhase(sink, v1::PHASE_LOAD_MODEL, "loading " + spec.model().path());
  auto dtype = ComputeDtype(spec.model().dtype());
  if (!dtype.ok()) return Failed(v1::FAILURE_REASON_USER_ERROR, dtype.status());
  model::LoadOptions load_options;
  load_options.dtype = *dtype;
  auto model = model::LlamaModel::Load(spec.model().path(), load_options);
  if (!model.ok()) return Failed(v1::FAILURE_REASON_MODEL_LOAD, model.status());
  auto tokenizer = model::LoadTokenizer(spec.model().path());
  if (!tokenizer.ok()) return Failed(v1::FAILURE_REASON_MODEL_LOAD, tokenizer.status());
  const model::LlamaConfig& config = (*model)->config();
  ModelShape shape;
  shape.hidden_size = config.hidden_size;
  shape.intermediate_size = config.intermediate_size;
  shape.head_dim = config.head_dim;
  shape.num_layers = config.num_hidden_layers;
  if (auto status = ValidateSpecForModel(spec, shape); !status.ok()) {
    return Failed(v1::FAILURE_REASON_USER_ERROR, status);
  }
  (void)EmitLog(sink, "info",
                absl::StrCat("loaded ", spec.model().name(), ": ", config.num_hidden_layers,
                             " layers, hidden ", config.hidden_size, ", vocab ",
                             config.vocab_size));
  ProgressReporter(sink, 0.0, kLoadEnd).Update(1, 1, "model loaded").IgnoreError();
  if (cancel.cancelled()) return Cancelled();

  const bool quantize = AsksForQuantization(spec);
  if (quantize) {
    (void)EmitLog(sink, "warning",
                  "this build runs the full-precision baseline only: rotation, outlier tokens, "
                  "prefix training, quantization and fine-tuning are not implemented yet");
  }

  // ---- evaluate ----
  RunJobOutcome outcome;
  (*outcome.result.mutable_metrics())["pipeline/quantized"] = 0;
  std::vector<std::string> datasets(spec.eval().ppl_datasets().begin(),
                                    spec.eval().ppl_datasets().end());
  if (datasets.empty() && spec.eval().eval_ppl()) datasets.push_back(spec.calibration().dataset_path());
  const auto mode = spec.calibration().documents() == "blank-line"
                        ? eval::DocumentMode::kBlankLine
                        : eval::DocumentMode::kWholeFile;
  const int64_t seqlen = spec.eval().ppl_seqlen();
  for (size_t d = 0; d < datasets.size(); ++d) {
    const std::string name = DatasetName(datasets[d]);
    (void)EmitPhase(sink, v1::PHASE_EVALUATE,
                    absl::StrCat("full-precision perplexity on ", name, ", seqlen ", seqlen));
    auto text = eval::ReadTextFile(datasets[d]);
    if (!text.ok()) return Failed(v1::FAILURE_REASON_USER_ERROR, text.status());
    auto tokens = eval::BuildTokenStream(**tokenizer, *text, mode);
    if (!tokens.ok()) return Failed(v1::FAILURE_REASON_USER_ERROR, tokens.status());
    int64_t windows = static_cast<int64_t>(tokens->size()) / seqlen;
    if (spec.eval().ppl_max_windows() > 0) {
      windows = std::min<int64_t>(windows, spec.eval().ppl_max_windows());
    }
    if (windows == 0) {
      return Failed(v1::FAILURE_REASON_USER_ERROR,
                    absl::InvalidArgumentError(absl::StrCat(
                        "eval.ppl_seqlen: ", name, " has ", tokens->size(),
                        " tokens, fewer than one window of ", seqlen)));
    }
    const double start = kLoadEnd + (1 - kLoadEnd) * d / datasets.size();
    const double end = kLoadEnd + (1 - kLoadEnd) * (d + 1) / datasets.size();
    ProgressReporter progress(sink, start, end);
    double total_nll = 0;
    int64_t predictions = 0;
    for (int64_t w = 0; w < windows; ++w) {
      if (cancel.cancelled()) return Cancelled();
      const std::vector<int32_t> window(tokens->begin() + w * seqlen,
                                        tokens->begin() + (w + 1) * seqlen);
      eval::PerplexityOptions ppl_options;
      ppl_options.seqlen = seqlen;
      ppl_options.batch_size = 1;
      auto measured = eval::EvaluatePerplexity(**model, window, ppl_options);
      if (!measured.ok()) return Failed(v1::FAILURE_REASON_INTERNAL, measured.status());
      total_nll += measured->mean_nll * measured->predictions;
      predictions += measured->predictions;
      v1::JobEvent loss;
      auto* point = loss.mutable_loss();
      point->set_phase(v1::PHASE_EVALUATE);
      point->set_block(-1);
      point->set_step(w);
      point->set_split("fp/" + name);
      point->set_loss(measured->mean_nll);
      if (auto status = sink.Emit(loss); !status.ok()) {
        return Failed(v1::FAILURE_REASON_INTERNAL, status);
      }
      (void)progress.Update(w + 1, windows, absl::StrCat(name, " window ", w + 1, "/", windows));
    }
    const double ppl = std::exp(total_nll / predictions);
    const std::string metric = absl::StrCat("ppl/", name, "/fp");
    (void)EmitMetric(sink, metric, ppl);
    (*outcome.result.mutable_metrics())[metric] = ppl;
  }
  (void)EmitPhase(sink, v1::PHASE_DONE, quantize ? "full-precision baseline done" : "done");
  return outcome;
}

}  // namespace quantd::pipeline
