#include "worker/pipeline/run_job.h"

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <map>
#include <optional>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "proto/common/error_text.h"
#include "proto/common/status_macros.h"
#include "proto/common/writable_folder.h"
#include "proto/spec/defaults.h"
#include "proto/spec/validate.h"
#include "worker/eval/multiple_choice.h"
#include "worker/eval/token_stream.h"
#include "worker/export/job_export.h"
#include "worker/model/device_choice.h"
#include "worker/model/dtype_names.h"
#include "worker/model/llama.h"
#include "worker/model/tokenizer.h"
#include "worker/pipeline/job_device.h"
#include "worker/pipeline/progress_reporter.h"
#include "worker/pipeline/quantized_variant.h"
#include "worker/pipeline/training_stage.h"
#include "worker/quant/calibration_data.h"
#include "worker/quant/outliers.h"
#include "worker/quant/prefix_cache.h"
#include "worker/train/training.h"

namespace quantd::pipeline {
namespace {

// Fractions of the whole job each phase covers.
constexpr double kLoadEnd = 0.05;
constexpr double kDataEnd = 0.08;
constexpr double kDetectEnd = 0.15;

RunJobOutcome Failed(v1::FailureReason reason, const absl::Status& status) {
  RunJobOutcome outcome;
  outcome.reason = reason;
  outcome.status = WithoutBacktrace(status);  // the job's user reads it, not LibTorch's frames
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

// A zero-shot task's metric names without the variant: acc, its standard error, and acc_norm
// where lm-evaluation-harness reports it (eval::ReportsAccNorm).
std::vector<std::string> TaskMeasures(const eval::TokenizedTask& task) {
  std::vector<std::string> out = {"acc/" + task.name, "acc_stderr/" + task.name};
  if (eval::ReportsAccNorm(task.layout)) out.push_back("acc_norm/" + task.name);
  return out;
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
  auto dtype = model::DTypeFromName(name.empty() ? "float32" : name);
  if (!dtype.ok()) return absl::InvalidArgumentError("model.dtype: unsupported \"" + name + "\"");
  return dtype;
}

bool AsksForQuantization(const v1::JobSpec& spec) {
  const auto& q = spec.quant();
  return q.wbits() < 16 || q.input_bits() < 16 || q.k_bits() < 16 || q.v_bits() < 16 ||
         spec.prefix().enabled() || spec.rotation().pre_rotate() || SpecTrains(spec);
}

std::string DatasetName(const std::string& path) {
  return std::filesystem::path(path).filename().string();
}

// A perplexity or a zero-shot accuracy: the figures a NaN makes meaningless.
bool IsResultMeasure(const std::string& metric) {
  return absl::StartsWith(metric, "ppl/") || absl::StartsWith(metric, "acc/");
}

// The job's result is its quantized model: one whose perplexity or zero-shot accuracy is NaN or
// Inf computes nothing usable, so it is not exported and the job fails (NUMERICAL). The message
// says whether the unquantized model did the same (then the model overflows in its dtype).
template <typename Metrics>
absl::Status CheckQuantizedFigures(const Metrics& metrics, const std::string& dtype) {
  constexpr absl::string_view kSuffix = "/quantized";
  for (const auto& [name, value] : metrics) {
    if (std::isfinite(value) || !IsResultMeasure(name) || !absl::EndsWith(name, kSuffix)) {
      continue;
    }
    const bool ppl = absl::StartsWith(name, "ppl/");
    const std::string measured = name.substr(4, name.size() - 4 - kSuffix.size());
    auto fp = metrics.find(name.substr(0, name.size() - kSuffix.size()) + "/fp");
    const bool fp_too = fp != metrics.end() && !std::isfinite(fp->second);
    return absl::InternalError(absl::StrCat(
        "the quantized model's ", ppl ? "perplexity" : "accuracy", " on ", measured, " is ", value,
        fp_too ? absl::StrCat(", and the unquantized model's too: the model itself overflows in ",
                              dtype.empty() ? "float32" : dtype,
                              dtype == "float16" ? " (bfloat16 has float32's range)" : "")
               : std::string(": the quantization is too coarse for this model (raise the bits, "
                             "or enable rotation and the prefix)"),
        "; nothing was exported"));
  }
  return absl::OkStatus();
}

}  // namespace

RunJobOutcome RunJob(const v1::JobSpec& original, const RunJobOptions& options, EventSink& sink,
                     CancellationToken& cancel) {
  v1::JobSpec spec = original;
  ApplyDefaults(&spec);
  if (auto status = ValidateSpec(spec); !status.ok()) {
    return Failed(v1::FAILURE_REASON_USER_ERROR, status);
  }
  exporter::JobArtifact artifact(spec);  // spec.output_dir: the export (worker/export)
  if (auto status = artifact.CheckDestination(); !status.ok()) {
    return Failed(v1::FAILURE_REASON_USER_ERROR, status);
  }
  if (SpecTrains(spec) && !options.work_dir.empty()) {  // checkpoints go to <work_dir>/train
    if (auto status = CheckWritableFolder(options.work_dir + "/train", "work dir"); !status.ok()) {
      return Failed(v1::FAILURE_REASON_USER_ERROR, status);
    }
  }

  // ---- load ----
  (void)EmitPhase(sink, v1::PHASE_LOAD_MODEL, "loading " + spec.model().path());
  auto dtype = ComputeDtype(spec.model().dtype());
  if (!dtype.ok()) return Failed(v1::FAILURE_REASON_USER_ERROR, dtype.status());
  auto device = model::ChooseDevice(options.device);
  if (!device.ok()) return Failed(v1::FAILURE_REASON_USER_ERROR, device.status());
  if (auto status = model::CheckComputeDtype(*device, *dtype); !status.ok()) {
    return Failed(v1::FAILURE_REASON_USER_ERROR,
                  absl::InvalidArgumentError(absl::StrCat("model.dtype: ", status.message())));
  }
  model::LoadOptions load_options;
  load_options.dtype = *dtype;
  load_options.device = *device;
  std::string placement_line;
  if (auto config = model::LoadLlamaConfig(spec.model().path()); config.ok()) {
    // Fine-tuning holds the full-precision model and its calibrated twin at once.
    const int copies = AsksForQuantization(spec) && SpecTrains(spec) ? 2 : 1;
    PlacementLimits limits;
    limits.max_memory = spec.resources().max_memory();
    limits.copies = copies;
    limits.device_free = DeviceFreeBytes(*device);
    limits.host_available = HostAvailableBytes();
    auto placement = PlanDevicePlacement(*config, *dtype, *device, limits);
    if (!placement.ok()) {
      return Failed(placement.status().code() == absl::StatusCode::kResourceExhausted
                        ? v1::FAILURE_REASON_OOM
                        : v1::FAILURE_REASON_USER_ERROR,
                    placement.status());
    }
    load_options.streamed_blocks = placement->streamed_blocks;
    placement_line = placement->summary;
  }
  auto model = model::LlamaModel::Load(spec.model().path(), load_options);
  if (!model.ok()) {
    return Failed(
        IsOutOfMemory(model.status()) ? v1::FAILURE_REASON_OOM : v1::FAILURE_REASON_MODEL_LOAD,
        model.status());
  }
  auto tokenizer = model::LoadTokenizer(spec.model().path());
  if (!tokenizer.ok()) return Failed(v1::FAILURE_REASON_MODEL_LOAD, tokenizer.status());
  const model::LlamaConfig config = (*model)->config();
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
                             " layers, hidden ", config.hidden_size, ", vocab ", config.vocab_size,
                             " on ", device->str()));
  if (!placement_line.empty()) (void)EmitLog(sink, "info", placement_line);
  for (const auto& [field, seqlen] :
       {std::pair<const char*, int64_t>{"calibration.training_seqlen",
                                        spec.calibration().training_seqlen()},
        {"eval.ppl_seqlen", spec.eval().eval_ppl() ? spec.eval().ppl_seqlen() : 0}}) {
    if (seqlen > config.max_position_embeddings) {
      (void)EmitLog(sink, "warning",
                    absl::StrCat(field, " ", seqlen, " is beyond the model's ",
                                 config.max_position_embeddings,
                                 " positions (max_position_embeddings; a prefix adds its own): "
                                 "RoPE runs past the trained context and the figures may mean "
                                 "little"));
    }
  }
  ProgressReporter(sink, 0.0, kLoadEnd).Update(1, 1, "model loaded").IgnoreError();
  if (cancel.cancelled()) return Cancelled();

  const bool quantize = AsksForQuantization(spec) || spec.eval().compare_size() > 0;
  const int32_t bos = (*tokenizer)->bos_id();
  const auto mode = spec.calibration().documents() == "blank-line" ? eval::DocumentMode::kBlankLine
                                                                   : eval::DocumentMode::kWholeFile;
  RunJobOutcome outcome;
  auto& metrics = *outcome.result.mutable_metrics();
  metrics["pipeline/quantized"] = quantize ? 1 : 0;
  auto metric = [&](const std::string& name, double value) {
    metrics[name] = value;
    (void)EmitMetric(sink, name, value);
    if (!std::isfinite(value) && IsResultMeasure(name)) {
      (void)EmitLog(sink, "warning",
                    absl::StrCat(name, " is ", value,
                                 ": the model computes non-finite values on this data (an "
                                 "overflow in the compute dtype, or a quantization too coarse)"));
    }
  };
  if (load_options.streamed_blocks > 0) {
    metric("device/streamed_blocks", load_options.streamed_blocks);
  }
  auto user_error_or = [](const absl::Status& status) {
    if (status.code() == absl::StatusCode::kCancelled) return Cancelled();
    if (IsOutOfMemory(status)) return Failed(v1::FAILURE_REASON_OOM, status);
    if (train::IsNumericalFailure(status)) return Failed(v1::FAILURE_REASON_NUMERICAL, status);
    const bool user = status.code() == absl::StatusCode::kInvalidArgument ||
                      status.code() == absl::StatusCode::kNotFound;
    return Failed(user ? v1::FAILURE_REASON_USER_ERROR : v1::FAILURE_REASON_INTERNAL, status);
  };

  // ---- evaluation streams (tokenized once, shared by every variant) ----
  std::vector<std::string> datasets(spec.eval().ppl_datasets().begin(),
                                    spec.eval().ppl_datasets().end());
  if (datasets.empty() && spec.eval().eval_ppl())
    datasets.push_back(spec.calibration().dataset_path());
  const int64_t seqlen = spec.eval().ppl_seqlen();
  std::vector<std::vector<int32_t>> streams;
  for (const auto& path : datasets) {
    auto text = eval::ReadTextFile(path);
    if (!text.ok()) return Failed(v1::FAILURE_REASON_USER_ERROR, text.status());
    auto tokens = eval::BuildTokenStream(**tokenizer, *text, mode);
    if (!tokens.ok()) return Failed(v1::FAILURE_REASON_USER_ERROR, tokens.status());
    if (static_cast<int64_t>(tokens->size()) < seqlen) {
      return Failed(v1::FAILURE_REASON_USER_ERROR,
                    absl::InvalidArgumentError(absl::StrCat(
                        "eval.ppl_seqlen: ", DatasetName(path), " has ", tokens->size(),
                        " tokens, fewer than one window of ", seqlen)));
    }
    streams.push_back(*std::move(tokens));
  }
  // Zero-shot tasks: read now, so that a bad task file fails the job before the long work.
  auto zero_shot =
      eval::LoadTasks(spec.eval().eval_tasks(), **tokenizer, spec.eval().eval_task_limit());
  if (!zero_shot.ok()) return Failed(v1::FAILURE_REASON_USER_ERROR, zero_shot.status());

  // ---- calibration windows and outlier tokens ----
  std::vector<std::vector<int32_t>> calibration, validation;
  std::vector<int32_t> detected_prefix;
  std::optional<quant::PrefixCache> fp_prefix;  // the detected prefix on the full-precision model
  std::vector<std::string> variants;
  if (quantize) {
    variants.push_back("quantized");
    for (const auto& name : spec.eval().compare()) variants.push_back(name);
    (void)EmitPhase(
        sink, v1::PHASE_CALIBRATION_DATA,
        absl::StrCat(spec.calibration().train_size(), " + ", spec.calibration().val_size(),
                     " windows of ", spec.calibration().training_seqlen(), " tokens from ",
                     DatasetName(spec.calibration().dataset_path())));
    auto text = eval::ReadTextFile(spec.calibration().dataset_path());
    if (!text.ok()) return Failed(v1::FAILURE_REASON_USER_ERROR, text.status());
    auto tokens = eval::BuildTokenStream(**tokenizer, *text, mode);
    if (!tokens.ok()) return Failed(v1::FAILURE_REASON_USER_ERROR, tokens.status());
    auto windows = quant::SampleWindows(
        *tokens, spec.calibration().train_size(), spec.calibration().val_size(),
        spec.calibration().training_seqlen(), spec.calibration().seed(), bos);
    if (!windows.ok()) return Failed(v1::FAILURE_REASON_USER_ERROR, windows.status());
    calibration = std::move(windows->train);
    validation = std::move(windows->val);
    ProgressReporter(sink, kLoadEnd, kDataEnd).Update(1, 1, "calibration data ready").IgnoreError();
    if (cancel.cancelled()) return Cancelled();

    const bool needs_prefix =
        spec.prefix().enabled() || spec.prefix().trainable() ||
        std::find(variants.begin(), variants.end(), "prefixquant") != variants.end();
    if (needs_prefix) {
      const double threshold = spec.prefix().outlier_threshold();
      (void)EmitPhase(sink, v1::PHASE_DETECT_OUTLIERS,
                      absl::StrCat("down_proj inputs of ", calibration.size(),
                                   " windows, threshold ", threshold));
      ProgressReporter progress(sink, kDataEnd, kDetectEnd);
      auto report = [&](int64_t done, int64_t total) {
        (void)progress.Update(done, total, absl::StrCat("outlier tokens ", done, "/", total));
        return !cancel.cancelled();
      };
      auto before = quant::MeasureOutliers(**model, calibration, threshold, nullptr, report);
      if (!before.ok()) return user_error_or(before.status());
      const quant::OutlierTokens chosen = quant::ChooseOutlierTokens(*before, bos);
      detected_prefix = chosen.prefix_ids;
      for (size_t l = 0; l < before->top_ratio.size(); ++l) {
        metric(absl::StrCat("outlier_ratio/layer", l, "/before"), before->top_ratio[l]);
      }
      metric("prefix/count", static_cast<double>(chosen.count));
      std::string text_form;
      for (int32_t id : detected_prefix) {
        outcome.result.add_prefix_token_ids(id);
        auto piece = (*tokenizer)->Decode({id});
        text_form += id == bos ? "[BOS]" : piece.ok() ? *piece : absl::StrCat("<", id, ">");
      }
      outcome.result.set_prefix_text(text_form);
      std::string ids;
      for (int32_t id : detected_prefix) absl::StrAppend(&ids, ids.empty() ? "" : " ", id);
      (void)EmitLog(sink, "info",
                    chosen.count == 0
                        ? std::string("no outlier tokens above the threshold: the prefix is [BOS]")
                        : absl::StrCat("o = ", chosen.count, " outlier token(s); prefix \"",
                                       text_form, "\" (ids ", ids, ")"));
      auto prefix = quant::BuildPrefixCache(**model, detected_prefix, bos);
      if (!prefix.ok()) return user_error_or(prefix.status());
      auto after = quant::MeasureOutliers(**model, calibration, threshold, &prefix->kv, report);
      if (!after.ok()) return user_error_or(after.status());
      for (size_t l = 0; l < after->top_ratio.size(); ++l) {
        metric(absl::StrCat("outlier_ratio/layer", l, "/after"), after->top_ratio[l]);
      }
      fp_prefix = *std::move(prefix);
    }
  }

  // ---- evaluation: full precision, then each quantized variant on the same windows ----
  const int64_t stages = 1 + static_cast<int64_t>(variants.size());
  auto stage_range = [&](int64_t stage) {
    const double start = kDetectEnd + (1 - kDetectEnd) * stage / stages;
    return std::make_pair(start, kDetectEnd + (1 - kDetectEnd) * (stage + 1) / stages);
  };
  // Evaluates `m` on every dataset (metric ppl/<dataset>/<label>, a loss point per window),
  // then on every zero-shot task (TaskMeasures: acc/<task>/<label>, acc_stderr/..., and
  // acc_norm/... where the harness has it).
  auto evaluate = [&](model::LlamaModel& m, const quant::PrefixCache* prefix,
                      const std::string& label, double start, double end) -> absl::Status {
    const size_t parts = std::max<size_t>(1, datasets.size() + zero_shot->size());
    for (size_t d = 0; d < datasets.size(); ++d) {
      const std::string name = DatasetName(datasets[d]);
      (void)EmitPhase(
          sink, v1::PHASE_EVALUATE,
          absl::StrCat("[", label, "] perplexity on ", name, ", seqlen ", seqlen,
                       prefix != nullptr
                           ? absl::StrCat(", after a ", prefix->ids.size(), "-token prefix")
                           : ""));
      ProgressReporter progress(sink, start + (end - start) * d / parts,
                                start + (end - start) * (d + 1) / parts);
      quant::WindowEval options;
      options.seqlen = seqlen;
      options.max_windows = spec.eval().ppl_max_windows();
      options.batch_size = spec.eval().eval_batch_size();
      options.prefix = prefix;
      auto measured =
          quant::EvaluateWindows(m, streams[d], options, [&](int64_t done, int64_t total) {
            (void)progress.Update(done, total,
                                  absl::StrCat(label, " ", name, " window ", done, "/", total));
            return !cancel.cancelled();
          });
      if (!measured.ok()) return measured.status();
      for (size_t w = 0; w < measured->window_nll.size(); ++w) {
        v1::JobEvent loss;
        auto* point = loss.mutable_loss();
        point->set_phase(v1::PHASE_EVALUATE);
        point->set_block(-1);
        point->set_step(static_cast<int64_t>(w));
        point->set_split(label + "/" + name);
        point->set_loss(measured->window_nll[w]);
        RETURN_IF_ERROR(sink.Emit(loss));
      }
      metric(absl::StrCat("ppl/", name, "/", label), measured->perplexity);
    }
    for (size_t t = 0; t < zero_shot->size(); ++t) {
      const eval::TokenizedTask& task = (*zero_shot)[t];
      (void)EmitPhase(sink, v1::PHASE_EVALUATE,
                      absl::StrCat("[", label, "] zero-shot ", task.name, ", ", task.choices.size(),
                                   " examples"));
      const size_t part = datasets.size() + t;
      ProgressReporter progress(sink, start + (end - start) * part / parts,
                                start + (end - start) * (part + 1) / parts);
      eval::MultipleChoiceOptions options;
      options.batch_size = spec.eval().eval_batch_size();
      options.bos_id = bos;
      if (prefix != nullptr) options.prefix = quant::AsScoringPrefix(*prefix);
      auto scored =
          eval::EvaluateMultipleChoice(m, task, options, [&](int64_t done, int64_t total) {
            (void)progress.Update(done, total,
                                  absl::StrCat(label, " ", task.name, " ", done, "/", total));
            return !cancel.cancelled();
          });
      if (!scored.ok()) return scored.status();
      const bool with_norm = eval::ReportsAccNorm(task.layout);
      (void)EmitLog(
          sink, "info",
          absl::StrFormat("[%s] %s: acc %.2f %% (+/- %.2f)%s over %d examples", label, task.name,
                          100 * scored->accuracy, 100 * scored->accuracy_stderr,
                          with_norm
                              ? absl::StrFormat(", acc_norm %.2f %%", 100 * scored->accuracy_norm)
                              : std::string(),
                          scored->examples));
      for (const std::string& measure : TaskMeasures(task)) {
        const double value = absl::StartsWith(measure, "acc_norm/")     ? scored->accuracy_norm
                             : absl::StartsWith(measure, "acc_stderr/") ? scored->accuracy_stderr
                                                                        : scored->accuracy;
        metric(absl::StrCat(measure, "/", label), value);
      }
    }
    return absl::OkStatus();
  };

  {
    auto [start, end] = stage_range(0);
    const double mid = fp_prefix ? (start + end) / 2 : end;
    if (auto status = evaluate(**model, nullptr, "fp", start, mid); !status.ok()) {
      return user_error_or(status);
    }
    // The same model with the prefix as context: what the prefix alone changes.
    if (fp_prefix) {
      if (auto status = evaluate(**model, &*fp_prefix, "fp_prefixed", mid, end); !status.ok()) {
        return user_error_or(status);
      }
    }
  }
  // Every variant loads its own copy: the device memory of this one is given back first.
  model->reset();
  std::map<std::string, std::string> evaluated;  // plan key -> variant that ran it
  for (size_t v = 0; v < variants.size(); ++v) {
    if (cancel.cancelled()) return Cancelled();
    auto plan = PlanVariant(spec, variants[v], detected_prefix);
    if (!plan.ok()) return Failed(v1::FAILURE_REASON_USER_ERROR, plan.status());
    // A compared variant with the job's own settings is not computed twice.
    const bool trains = variants[v] == "quantized" && SpecTrains(spec);
    const std::string key = PlanKey(*plan) + (trains ? "/trained" : "");
    if (auto same = evaluated.find(key); same != evaluated.end()) {
      (void)EmitLog(sink, "info",
                    absl::StrCat("variant ", variants[v], " has the settings of ", same->second,
                                 ": reusing its figures"));
      std::vector<std::string> measures;
      for (const auto& path : datasets) measures.push_back("ppl/" + DatasetName(path));
      for (const auto& task : *zero_shot) {
        for (const std::string& measure : TaskMeasures(task)) measures.push_back(measure);
      }
      for (const auto& measure : measures) {
        metric(measure + "/" + variants[v], metrics[measure + "/" + same->second]);
      }
      continue;
    }
    evaluated[key] = variants[v];
    auto [start, end] = stage_range(static_cast<int64_t>(v) + 1);
    const double mid = start + (end - start) * 0.3;
    ProgressReporter calibrating(sink, start, mid);
    VariantHooks hooks;
    hooks.phase = [&](v1::Phase phase, const std::string& detail) {
      (void)EmitPhase(sink, phase, detail);
    };
    hooks.progress = [&](int64_t done, int64_t total, const std::string& detail) {
      (void)calibrating.Update(done, total, detail);
      return !cancel.cancelled();
    };
    absl::StatusOr<VariantModel> built;
    torch::Tensor trained_embeddings;  // a continuous trained prefix, for the export
    if (trains) {
      TrainingInputs inputs;
      inputs.spec = &spec;
      inputs.model_dir = spec.model().path();
      inputs.load = load_options;
      inputs.tokenizer = tokenizer->get();
      inputs.bos_id = bos;
      inputs.train = &calibration;
      inputs.val = &validation;
      inputs.plan = *plan;
      if (spec.prefix().trainable()) inputs.plan.prefix_ids = detected_prefix;  // the init
      if (!options.work_dir.empty()) inputs.checkpoint_dir = options.work_dir + "/train";
      TrainingHooks training;
      training.sink = &sink;
      training.cancel = &cancel;
      training.progress_start = start;
      training.progress_end = start + (end - start) * 0.8;
      training.metric = metric;
      training.evaluate_untuned = [&](model::LlamaModel& m, const quant::PrefixCache* p,
                                      double from, double to) {
        return evaluate(m, p, "quantized_before_finetune", from, to);
      };
      auto trained = BuildTrainedVariant(inputs, training);
      if (!trained.ok()) return user_error_or(trained.status());
      if (trained->prefix_trained) {
        outcome.result.mutable_prefix_token_ids()->Assign(trained->prefix_ids.begin(),
                                                          trained->prefix_ids.end());
        outcome.result.set_prefix_text(trained->prefix_text);
      }
      trained_embeddings = trained->prefix_embeddings;
      built = std::move(trained->variant);
    } else {
      built = BuildVariant(spec.model().path(), load_options, *plan, bos, calibration,
                           spec.training().batch_size(), hooks);
    }
    if (!built.ok()) return user_error_or(built.status());
    auto status = evaluate(*built->model, built->prefix ? &*built->prefix : nullptr, variants[v],
                           trains ? start + (end - start) * 0.8 : mid, end);
    if (!status.ok()) return user_error_or(status);
    if (variants[v] == "quantized") {
      if (absl::Status finite = CheckQuantizedFigures(metrics, spec.model().dtype());
          !finite.ok()) {
        return Failed(v1::FAILURE_REASON_NUMERICAL, finite);
      }
    }
    if (variants[v] == "quantized" && artifact.requested()) {
      (void)EmitPhase(sink, v1::PHASE_EXPORT, "writing and re-checking " + spec.output_dir());
      exporter::ArtifactModel contents;
      contents.model = built->model.get();
      contents.prefix = built->prefix ? &*built->prefix : nullptr;
      contents.prefix_embeddings = trained_embeddings;
      contents.rotated = plan->rotate;
      contents.rotation = plan->rotation;
      contents.source_model_dir = spec.model().path();
      auto report = artifact.WriteAndValidate(contents, calibration, spec.eval().eval_batch_size());
      if (!report.ok()) return Failed(v1::FAILURE_REASON_INTERNAL, report.status());
      metric("export/bytes", static_cast<double>(report->artifact_bytes));
      metric("export/input_bytes", static_cast<double>(report->input_bytes));
    }
  }
  if (artifact.requested() && !variants.empty()) {
    auto path = artifact.Commit(metrics);
    if (!path.ok()) return Failed(v1::FAILURE_REASON_INTERNAL, path.status());
    outcome.result.set_artifact_path(*path);
    v1::JobEvent committed;
    committed.mutable_artifact()->set_kind("quantized_model");
    committed.mutable_artifact()->set_path(*path);
    committed.mutable_artifact()->set_size_bytes(static_cast<int64_t>(metrics["export/bytes"]));
    (void)sink.Emit(committed);
  } else if (artifact.requested()) {
    (void)EmitLog(sink, "warning", "output_dir is set but nothing was quantized: no export");
  }
  (void)EmitPhase(sink, v1::PHASE_DONE, quantize ? "quantized and evaluated" : "done");
  return outcome;
}

}  // namespace quantd::pipeline
