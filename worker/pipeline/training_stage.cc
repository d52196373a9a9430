#include "worker/pipeline/training_stage.h"

#include <algorithm>
#include <optional>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "google/protobuf/io/coded_stream.h"
#include "google/protobuf/io/zero_copy_stream_impl_lite.h"
#include "proto/common/status_macros.h"
#include "worker/pipeline/finetune_installer.h"
#include "worker/pipeline/progress_reporter.h"
#include "worker/quant/quantize_model.h"
#include "worker/train/checkpoint.h"
#include "worker/train/finetune.h"
#include "worker/train/prefix_trainer.h"
#include "worker/train/ste_block.h"

namespace quantd::pipeline {
namespace {

std::string SpecText(const v1::JobSpec& spec) {
  std::string out;
  {
    google::protobuf::io::StringOutputStream stream(&out);
    google::protobuf::io::CodedOutputStream coded(&stream);
    coded.SetSerializationDeterministic(true);
    spec.SerializeToCodedStream(&coded);
  }
  return out;
}

// The windows' token ids, in order, as text for the checkpoint fingerprint: the spec names the
// calibration file by path only, and its contents may change between runs.
std::string WindowsText(const std::vector<std::vector<int32_t>>& train,
                        const std::vector<std::vector<int32_t>>& val) {
  std::string out;
  for (const auto* windows : {&train, &val}) {
    out += absl::StrCat("|", windows->size());
    for (const auto& window : *windows) {
      out.append(reinterpret_cast<const char*>(window.data()), window.size() * sizeof(int32_t));
    }
  }
  return out;
}

void Emit(EventSink& sink, const v1::JobEvent& event, absl::Status* first_error) {
  absl::Status status = sink.Emit(event);
  if (!status.ok() && first_error->ok()) *first_error = status;
}

v1::JobEvent PhaseEvent(v1::Phase phase, const std::string& detail) {
  v1::JobEvent event;
  event.mutable_phase_change()->set_phase(phase);
  event.mutable_phase_change()->set_detail(detail);
  return event;
}

v1::JobEvent LogEvent(const std::string& message) {
  v1::JobEvent event;
  const bool warning = message.rfind("warning", 0) == 0 || message.rfind("ignoring", 0) == 0;
  event.mutable_log()->set_level(warning ? "warning" : "info");
  event.mutable_log()->set_message(message);
  return event;
}

v1::JobEvent LossEvent(const train::LossPoint& p) {
  v1::JobEvent event;
  v1::LossPoint* out = event.mutable_loss();
  out->set_phase(p.phase == train::TrainPhase::kPrefix ? v1::PHASE_TRAIN_PREFIX
                                                       : v1::PHASE_FINETUNE);
  out->set_block(p.block);
  out->set_epoch(p.epoch);
  out->set_step(p.step);
  out->set_split(p.split);
  out->set_loss(p.loss);
  for (const auto& [name, value] : p.components) (*out->mutable_components())[name] = value;
  out->set_learning_rate(p.learning_rate);
  return event;
}

std::string TokenText(const model::Tokenizer* tokenizer, int32_t id, int32_t bos) {
  if (id == bos) return "[BOS]";
  if (tokenizer == nullptr) return absl::StrCat("<", id, ">");
  auto piece = tokenizer->Decode({id});
  return piece.ok() ? *piece : absl::StrCat("<", id, ">");
}

// The KV cache of continuous prefix embeddings [P, hidden].
absl::StatusOr<quant::PrefixCache> ContinuousPrefixCache(model::LlamaModel& model,
                                                         const torch::Tensor& embeddings,
                                                         const std::vector<int32_t>& nearest) {
  torch::NoGradGuard no_grad;
  model::ForwardRequest request;
  request.input_embeds = embeddings.to(model.device(), model.dtype()).unsqueeze(0);
  request.logits = model::LogitsMode::kLast;
  request.return_kv = true;
  ASSIGN_OR_RETURN(model::ForwardResult result, model.Forward(request));
  quant::PrefixCache cache;
  cache.ids = nearest;
  cache.kv = std::move(result.kv);
  cache.last_logits = result.logits.view({-1}).to(torch::kFloat32);
  cache.bos_id = -1;  // not a token sequence: a window's BOS is always kept
  return cache;
}

// Keeps the largest |x| seen at any layer's down_proj input.
class MaxDownProjInput : public model::ActivationObserver {
 public:
  bool Wants(int, model::ActivationSite site) const override {
    return site == model::ActivationSite::kDownProjInput;
  }
  void Observe(int, model::ActivationSite, const torch::Tensor& x) override {
    max = std::max(max, x.detach().abs().max().item<double>());
  }
  double max = 0.0;
};

// The largest |x| at a down_proj input over (up to 4 of) `windows` after `prefix`: only the
// windows' tokens are observed, as in outlier detection (DESIGN.md §3.4).
absl::StatusOr<double> MaxActivationAfter(model::LlamaModel& model, const model::KvCache& prefix,
                                          const std::vector<std::vector<int32_t>>& windows) {
  const size_t n = std::min<size_t>(4, windows.size());
  std::vector<int64_t> flat;
  for (size_t w = 0; w < n; ++w) flat.insert(flat.end(), windows[w].begin(), windows[w].end());
  torch::NoGradGuard no_grad;
  MaxDownProjInput observer;
  model::ForwardRequest request;
  request.input_ids = torch::tensor(flat, torch::kInt64).view({static_cast<int64_t>(n), -1});
  request.past = &prefix;
  request.observer = &observer;
  request.logits = model::LogitsMode::kNone;
  RETURN_IF_ERROR(model.Forward(request).status());
  return observer.max;
}

train::TrainCallbacks Callbacks(EventSink& sink, CancellationToken& cancel,
                                ProgressReporter& progress, const std::string& label,
                                std::function<int64_t(const train::LossPoint&)> done, int64_t total,
                                absl::Status* sink_error) {
  train::TrainCallbacks callbacks;
  callbacks.on_loss = [&sink, &progress, label, done, total,
                       sink_error](const train::LossPoint& p) {
    Emit(sink, LossEvent(p), sink_error);
    if (p.split == "train") {
      (void)progress.Update(
          done(p), total,
          p.block >= 0
              ? absl::StrFormat("%s block %d step %d loss %.4g", label, p.block, p.step, p.loss)
              : absl::StrFormat("%s step %d loss %.4g", label, p.step, p.loss));
    }
  };
  callbacks.on_log = [&sink, sink_error](const std::string& line) {
    Emit(sink, LogEvent(line), sink_error);
  };
  callbacks.cancelled = [&cancel, sink_error] { return cancel.cancelled() || !sink_error->ok(); };
  return callbacks;
}

int64_t StepsPerEpoch(size_t windows, int64_t batch) {
  return (static_cast<int64_t>(windows) + batch - 1) / batch;
}

}  // namespace

bool SpecTrains(const v1::JobSpec& spec) {
  return spec.prefix().trainable() || spec.training().epochs() > 0;
}

absl::StatusOr<TrainedVariant> BuildTrainedVariant(const TrainingInputs& in,
                                                   const TrainingHooks& hooks) {
  const v1::JobSpec& spec = *in.spec;
  EventSink& sink = *hooks.sink;
  CancellationToken& cancel = *hooks.cancel;
  absl::Status sink_error;
  auto metric = [&](const std::string& name, double value) {
    if (hooks.metric) hooks.metric(name, value);
  };
  auto log = [&](const std::string& line) { Emit(sink, LogEvent(line), &sink_error); };
  auto phase = [&](v1::Phase p, const std::string& detail) {
    Emit(sink, PhaseEvent(p, detail), &sink_error);
  };
  auto stop_if_cancelled = [&]() -> absl::Status {
    if (cancel.cancelled()) return absl::CancelledError("cancelled");
    return sink_error;
  };
  const VariantPlan& plan = in.plan;
  const bool train_prefix = spec.prefix().trainable();
  const bool finetune = spec.training().epochs() > 0;
  const int64_t batch = spec.training().batch_size();
  const double span = hooks.progress_end - hooks.progress_start;
  const double prefix_end =
      hooks.progress_start + span * (train_prefix ? (finetune ? 0.3 : 0.8) : 0.0);
  const double calibrate_end = prefix_end + (hooks.progress_end - prefix_end) * 0.1;
  const double untuned_end = calibrate_end + (hooks.progress_end - prefix_end) * 0.1;

  // 1. The full-precision, rotated model.
  ASSIGN_OR_RETURN(std::unique_ptr<model::LlamaModel> fp,
                   model::LlamaModel::Load(in.model_dir, in.load));
  std::string fingerprint;
  try {
    fingerprint = train::Fingerprint(SpecText(spec) + WindowsText(*in.train, *in.val), *fp);
  } catch (const std::exception& e) {
    return absl::InternalError(absl::StrCat("fingerprinting the model: ", e.what()));
  }
  const std::string tag = "[" + plan.name + "] ";
  if (plan.rotate) {
    phase(v1::PHASE_ROTATE, tag + "Hadamard rotation of the model to train");
    RETURN_IF_ERROR(quant::RotateModel(*fp, plan.rotation));
  }
  RETURN_IF_ERROR(stop_if_cancelled());

  // 2. The prefix: trained, or the plan's.
  TrainedVariant out;
  out.prefix_ids = plan.prefix_ids;
  std::optional<quant::PrefixCache> prefix;
  if (train_prefix) {
    const int64_t len = spec.prefix().len() > 0
                            ? spec.prefix().len()
                            : std::max<int64_t>(1, static_cast<int64_t>(plan.prefix_ids.size()));
    std::optional<train::PrefixTrainResult> trained;
    if (!in.checkpoint_dir.empty()) {
      ASSIGN_OR_RETURN(trained, train::LoadPrefixCheckpoint(in.checkpoint_dir, fingerprint, log));
      if (trained.has_value()) {
        log("trained prefix restored from the checkpoint in " + in.checkpoint_dir);
      }
    }
    if (!trained.has_value()) {
      train::PrefixTrainOptions options;
      options.prefix_len = len;
      options.lr = spec.prefix().lr();
      options.epochs = spec.prefix().epochs();
      options.batch_size = batch;
      options.target_layers.assign(spec.prefix().target_layers().begin(),
                                   spec.prefix().target_layers().end());
      options.init_token_ids = plan.prefix_ids;
      options.seed = static_cast<uint64_t>(spec.calibration().seed());
      options.loss.threshold = spec.prefix().outlier_threshold();
      if (spec.prefix().loss_site() == "down_proj_input") {
        options.site = model::ActivationSite::kDownProjInput;
      }
      options.tokenizer = in.tokenizer;
      // With streamed blocks a whole-model backward would hold every block on the device.
      options.blockwise_backward = fp->streamed_blocks() > 0;
      phase(v1::PHASE_TRAIN_PREFIX,
            absl::StrCat(tag, len, " prefix embeddings, ", options.epochs, " epochs of ",
                         in.train->size(), " windows, lr ", options.lr));
      const int64_t total = StepsPerEpoch(in.train->size(), batch) * options.epochs;
      ProgressReporter progress(sink, hooks.progress_start, prefix_end);
      auto callbacks = Callbacks(
          sink, cancel, progress, "prefix", [](const train::LossPoint& p) { return p.step + 1; },
          total, &sink_error);
      auto result = train::TrainPrefix(*fp, *in.train, *in.val, options, callbacks);
      if (!result.ok()) return sink_error.ok() ? result.status() : sink_error;
      trained = *std::move(result);
      if (!in.checkpoint_dir.empty()) {
        if (auto s = train::SavePrefixCheckpoint(in.checkpoint_dir, fingerprint, *trained);
            !s.ok()) {
          log(absl::StrCat("warning: prefix checkpoint not saved (", s.message(),
                           "); going on without it"));
        }
      }
    }
    out.prefix_trained = true;
    out.prefix_ids = trained->nearest_ids;
    double min_cosine = 1.0;
    for (double c : trained->nearest_cosine) min_cosine = std::min(min_cosine, c);
    metric("prefix/len", static_cast<double>(trained->nearest_ids.size()));
    metric("prefix/initial_loss", trained->initial_loss);
    metric("prefix/best_loss", trained->best_loss);
    metric("prefix/best_epoch", trained->best_epoch);
    metric("prefix/steps", static_cast<double>(trained->steps));
    metric("prefix/nearest_cosine_min", min_cosine);
    std::string nearest;
    for (size_t i = 0; i < trained->nearest_ids.size(); ++i) {
      absl::StrAppendFormat(
          &nearest, "%s%d \"%s\" (cos %.3f)", i ? ", " : "", trained->nearest_ids[i],
          TokenText(in.tokenizer, trained->nearest_ids[i], in.bos_id), trained->nearest_cosine[i]);
    }
    log(absl::StrFormat("prefix loss %.5g -> %.5g (best epoch %d); nearest tokens: %s",
                        trained->initial_loss, trained->best_loss, trained->best_epoch, nearest));
    const bool continuous = spec.prefix().mode() == v1::PREFIX_MODE_CONTINUOUS;
    phase(v1::PHASE_BUILD_PREFIX_CACHE,
          tag + absl::StrCat("prefix KV cache of the ", len, " trained ",
                             continuous ? "embeddings (continuous)" : "prefix's nearest tokens"));
    if (continuous) {
      ASSIGN_OR_RETURN(prefix, ContinuousPrefixCache(*fp, trained->embeddings, out.prefix_ids));
      out.prefix_embeddings = trained->embeddings;
    } else {
      ASSIGN_OR_RETURN(prefix, quant::BuildPrefixCache(*fp, out.prefix_ids, in.bos_id));
    }
    if (!plan.prefix_ids.empty()) {
      // What the learned prefix does to the outliers, against the detected tokens it started from.
      const auto& windows = in.val->empty() ? *in.train : *in.val;
      ASSIGN_OR_RETURN(quant::PrefixCache detected,
                       quant::BuildPrefixCache(*fp, plan.prefix_ids, in.bos_id));
      ASSIGN_OR_RETURN(const double with_detected, MaxActivationAfter(*fp, detected.kv, windows));
      ASSIGN_OR_RETURN(const double with_trained, MaxActivationAfter(*fp, prefix->kv, windows));
      metric("prefix/max_down_proj_input/detected", with_detected);
      metric("prefix/max_down_proj_input/trained", with_trained);
      log(absl::StrFormat("largest |down_proj input| after the prefix: detected %.4g, trained %.4g",
                          with_detected, with_trained));
    }
  } else if (!plan.prefix_ids.empty()) {
    phase(v1::PHASE_BUILD_PREFIX_CACHE,
          tag + absl::StrCat("prefix KV cache of ", plan.prefix_ids.size(), " tokens"));
    ASSIGN_OR_RETURN(prefix, quant::BuildPrefixCache(*fp, plan.prefix_ids, in.bos_id));
  }
  for (int32_t id : out.prefix_ids) out.prefix_text += TokenText(in.tokenizer, id, in.bos_id);
  RETURN_IF_ERROR(stop_if_cancelled());

  // 3. The calibrated, quantized twin.
  ASSIGN_OR_RETURN(std::unique_ptr<model::LlamaModel> twin,
                   model::LlamaModel::Load(in.model_dir, in.load));
  if (plan.rotate) RETURN_IF_ERROR(quant::RotateModel(*twin, plan.rotation));
  RETURN_IF_ERROR(quant::QuantizeModel(*twin, plan.quant));
  if (quant::NeedsCalibration(*twin)) {
    phase(v1::PHASE_CALIBRATE,
          tag + absl::StrCat("static scales from ", in.train->size(), " windows"));
    ProgressReporter progress(sink, prefix_end, calibrate_end);
    RETURN_IF_ERROR(quant::CalibrateStatic(
        *twin, *in.train, prefix ? &prefix->kv : nullptr, batch, [&](int64_t done, int64_t total) {
          (void)progress.Update(done, total, absl::StrCat(tag, "calibration ", done, "/", total));
          return !cancel.cancelled();
        }));
  }
  if (!finetune) {
    out.variant.model = std::move(twin);
    out.variant.prefix = std::move(prefix);
    return out;
  }
  if (hooks.evaluate_untuned) {
    RETURN_IF_ERROR(
        hooks.evaluate_untuned(*twin, prefix ? &*prefix : nullptr, calibrate_end, untuned_end));
  }
  RETURN_IF_ERROR(stop_if_cancelled());

  // 4. Block-wise fine-tuning of the full-precision model into the twin's quantized form.
  train::SteBlockOptions ste;
  ste.wbits = plan.quant.weight.bits;
  ste.w_group_size = plan.quant.weight.group_size;
  ste.mse_init = plan.quant.weight.mse_init;
  ste.input_bits = plan.quant.input_bits;
  ste.input_dynamic = plan.quant.input_dynamic;
  ste.activation_clip = plan.quant.activation_clip;
  ste.learn_activation_clip = spec.quant().activation_clipping();
  train::FinetuneOptions options;
  options.epochs = spec.training().epochs();
  options.quant_lr = spec.training().quant_lr();
  options.weight_lr = spec.training().weight_lr();
  options.batch_size = batch;
  options.log_every = spec.training().loss_every_steps();
  options.seed = static_cast<uint64_t>(spec.calibration().seed());
  options.checkpoint_dir = in.checkpoint_dir;
  options.fingerprint = fingerprint;
  const int layers = static_cast<int>(fp->blocks.size());
  const int64_t per_block = StepsPerEpoch(in.train->size(), batch) * options.epochs;
  phase(v1::PHASE_FINETUNE,
        tag + absl::StrCat(layers, " blocks, ", options.epochs, " epochs of ", in.train->size(),
                           " windows each, quant_lr ", options.quant_lr, ", weight_lr ",
                           options.weight_lr));
  ProgressReporter progress(sink, untuned_end, hooks.progress_end);
  auto callbacks = Callbacks(
      sink, cancel, progress, "fine-tuning",
      [per_block](const train::LossPoint& p) { return p.block * per_block + p.step + 1; },
      per_block * layers, &sink_error);
  auto result = train::FinetuneBlocks(*fp, prefix ? &prefix->kv : nullptr, *in.train, *in.val,
                                      MakeCalibratedBlockInstaller(*twin, ste), options, callbacks);
  if (!result.ok()) return sink_error.ok() ? result.status() : sink_error;
  twin.reset();
  RETURN_IF_ERROR(ToQuantLinears(*fp, plan.quant));
  if (result->resumed_at_block > 0) {
    log(absl::StrCat("fine-tuning resumed at block ", result->resumed_at_block, ": blocks 0..",
                     result->resumed_at_block - 1, " restored from the checkpoint in ",
                     in.checkpoint_dir));
  }
  metric("finetune/resumed_at_block", result->resumed_at_block);
  int64_t steps = 0;
  for (const train::BlockReport& b : result->blocks) {
    metric(absl::StrCat("finetune/block", b.block, "/initial_val_loss"), b.initial_val_loss);
    metric(absl::StrCat("finetune/block", b.block, "/final_val_loss"), b.final_val_loss);
    metric(absl::StrCat("finetune/block", b.block, "/kept_epoch"), b.kept_epoch);
    steps += b.steps;
  }
  if (!result->blocks.empty()) {
    metric("finetune/final_val_loss", result->blocks.back().final_val_loss);
  }
  metric("finetune/steps", static_cast<double>(steps));
  metric("finetune/peak_training_bytes", static_cast<double>(result->peak_training_bytes));
  metric("finetune/peak_rss_bytes", static_cast<double>(result->peak_rss_bytes));
  out.variant.model = std::move(fp);
  out.variant.prefix = std::move(prefix);
  return out;
}

}  // namespace quantd::pipeline
