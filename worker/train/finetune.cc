#include "worker/train/finetune.h"

#include <sys/resource.h>

#include <algorithm>
#include <cmath>
#include <map>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "proto/common/status_macros.h"
#include "worker/train/checkpoint.h"
#include "worker/train/loss_scaler.h"

namespace quantd::train {
namespace {

constexpr int64_t kEvalBatch = 8;

torch::Tensor Embed(model::LlamaModel& model, const std::vector<std::vector<int32_t>>& windows) {
  std::vector<int64_t> flat;
  for (const auto& w : windows) flat.insert(flat.end(), w.begin(), w.end());
  const int64_t n = static_cast<int64_t>(windows.size());
  torch::NoGradGuard no_grad;
  return model.Embed(torch::tensor(flat, torch::kInt64).view({n, -1}).to(model.device()));
}

// The block on every row of `x`, in chunks, without autograd.
torch::Tensor RunAll(model::LlamaModel& model, int layer, const torch::Tensor& x,
                     const model::KvCache* prefix) {
  torch::NoGradGuard no_grad;
  const int64_t start = prefix != nullptr ? prefix->length() : 0;
  const model::LayerKv* past =
      prefix != nullptr && !prefix->empty() ? &prefix->layers[layer] : nullptr;
  std::vector<torch::Tensor> parts;
  for (int64_t first = 0; first < x.size(0); first += kEvalBatch) {
    const int64_t n = std::min(kEvalBatch, x.size(0) - first);
    parts.push_back(model.RunBlock(layer, x.narrow(0, first, n), start, past, nullptr, nullptr));
  }
  return torch::cat(parts, 0);
}

double Mse(model::LlamaModel& model, int layer, const torch::Tensor& input,
           const torch::Tensor& target, const model::KvCache* prefix) {
  const torch::Tensor out = RunAll(model, layer, input, prefix);
  return torch::mse_loss(out.to(torch::kFloat32), target.to(torch::kFloat32)).item<double>();
}

int64_t Bytes(const torch::Tensor& t) { return t.defined() ? t.numel() * t.element_size() : 0; }

std::map<std::string, torch::Tensor> Snapshot(TrainableBlock& block) {
  torch::NoGradGuard no_grad;
  std::map<std::string, torch::Tensor> out;
  for (auto& [name, t] : block.State()) out[name] = t.detach().clone();
  return out;
}

absl::Status Restore(TrainableBlock& block, const std::map<std::string, torch::Tensor>& saved,
                     int layer) {
  torch::NoGradGuard no_grad;
  for (auto& [name, t] : block.State()) {
    auto it = saved.find(name);
    if (it == saved.end() || !it->second.sizes().equals(t.sizes())) {
      return absl::InvalidArgumentError(
          absl::StrCat("block ", layer, ": saved state lacks ", name, " or differs in shape"));
    }
    t.copy_(it->second.to(t.device(), t.scalar_type()));
  }
  return absl::OkStatus();
}

void SetRequiresGrad(const std::vector<torch::Tensor>& tensors, bool on) {
  for (auto t : tensors) t.set_requires_grad(on);
}

int64_t PeakRss() {
  struct rusage usage {};
  getrusage(RUSAGE_SELF, &usage);
  return static_cast<int64_t>(usage.ru_maxrss) * 1024;
}

}  // namespace

absl::StatusOr<FinetuneResult> FinetuneBlocks(model::LlamaModel& model,
                                              const model::KvCache* prefix,
                                              const std::vector<std::vector<int32_t>>& train,
                                              const std::vector<std::vector<int32_t>>& val,
                                              const BlockInstaller& installer,
                                              const FinetuneOptions& options,
                                              const TrainCallbacks& callbacks) {
  if (train.empty()) return absl::InvalidArgumentError("fine-tuning: no training window");
  if (options.epochs < 0 || options.batch_size < 1 || options.log_every < 1) {
    return absl::InvalidArgumentError("fine-tuning: epochs < 0, batch_size < 1 or log_every < 1");
  }
  for (const auto* set : {&train, &val}) {
    for (const auto& w : *set) {
      if (w.size() != train[0].size()) {
        return absl::InvalidArgumentError("fine-tuning: windows differ in length");
      }
    }
  }
  const int layers = static_cast<int>(model.blocks.size());
  if (prefix != nullptr && !prefix->empty() && static_cast<int>(prefix->layers.size()) != layers) {
    return absl::InvalidArgumentError("fine-tuning: the prefix KV cache has the wrong layer count");
  }
  auto log = [&](const std::string& line) {
    if (callbacks.on_log) callbacks.on_log(line);
  };
  FinetuneResult result;
  FinetuneCheckpoint checkpoint;
  checkpoint.fingerprint = options.fingerprint;
  if (!options.checkpoint_dir.empty()) {
    ASSIGN_OR_RETURN(auto loaded,
                     LoadFinetuneCheckpoint(options.checkpoint_dir, options.fingerprint, log));
    if (loaded.has_value() && loaded->next_block <= layers) checkpoint = std::move(*loaded);
    if (checkpoint.next_block > 0) {
      log(absl::StrCat("resuming fine-tuning at block ", checkpoint.next_block, ": blocks 0..",
                       checkpoint.next_block - 1, " come from the checkpoint in ",
                       options.checkpoint_dir));
    }
  }
  try {
    torch::Tensor fp_train = Embed(model, train);
    torch::Tensor fp_val = val.empty() ? torch::Tensor() : Embed(model, val);
    torch::Tensor q_train = fp_train, q_val = fp_val;
    int failures = 0;
    for (int layer = 0; layer < layers; ++layer) {
      // A streamed block stays on the device while it is trained (model/block_streaming.h).
      const model::BlockLease lease = model.LeaseBlock(layer);
      // Full-precision targets, before the block is replaced.
      const torch::Tensor target_train = RunAll(model, layer, fp_train, prefix);
      const torch::Tensor target_val =
          fp_val.defined() ? RunAll(model, layer, fp_val, prefix) : torch::Tensor();
      ASSIGN_OR_RETURN(std::unique_ptr<TrainableBlock> block, installer(model, layer));
      const torch::Tensor& sel_in = q_val.defined() ? q_val : q_train;
      const torch::Tensor& sel_target = q_val.defined() ? target_val : target_train;
      BlockReport report;
      report.block = layer;

      if (layer < checkpoint.next_block) {
        RETURN_IF_ERROR(Restore(*block, checkpoint.block_states[layer], layer));
        const auto& stats = checkpoint.block_stats[layer];
        report.initial_val_loss = stats.at(0);
        report.final_val_loss = stats.at(1);
        report.steps = static_cast<int64_t>(stats.at(2));
        report.rolled_back = stats.at(3) != 0.0;
        if (report.rolled_back) ++failures;  // the limit holds across restarts
        // Checkpoints written before the best state was kept have 4 figures.
        report.kept_epoch = stats.size() > 5 ? static_cast<int>(stats[4]) : options.epochs - 1;
        report.last_epoch = stats.size() > 5 ? static_cast<int>(stats[5]) : options.epochs - 1;
        report.from_checkpoint = true;
        result.resumed_at_block = layer + 1;
      } else {
        const std::vector<torch::Tensor> quant_params = block->QuantParameters();
        const std::vector<torch::Tensor> weight_params =
            options.weight_lr > 0 ? block->WeightParameters() : std::vector<torch::Tensor>{};
        SetRequiresGrad(quant_params, true);
        SetRequiresGrad(weight_params, true);
        std::vector<torch::optim::OptimizerParamGroup> groups;
        std::vector<double> base_lr;
        if (!quant_params.empty()) {
          groups.emplace_back(quant_params,
                              std::make_unique<torch::optim::AdamWOptions>(options.quant_lr));
          base_lr.push_back(options.quant_lr);
        }
        if (!weight_params.empty()) {
          groups.emplace_back(weight_params,
                              std::make_unique<torch::optim::AdamWOptions>(options.weight_lr));
          base_lr.push_back(options.weight_lr);
        }
        for (auto& g : groups) {
          static_cast<torch::optim::AdamWOptions&>(g.options()).weight_decay(options.weight_decay);
        }
        int64_t param_bytes = 0;
        for (const auto* ps : {&quant_params, &weight_params}) {
          for (const auto& p : *ps) param_bytes += Bytes(p);
        }
        int64_t act_bytes = 0;
        for (const torch::Tensor* t : std::initializer_list<const torch::Tensor*>{
                 &fp_train, &fp_val, &q_train, &q_val, &target_train, &target_val}) {
          act_bytes += Bytes(*t);
        }
        // Parameters, gradients and the two AdamW moments.
        result.peak_training_bytes =
            std::max(result.peak_training_bytes, act_bytes + 4 * param_bytes);

        report.initial_val_loss = Mse(model, layer, sel_in, sel_target, prefix);
        // The state with the lowest validation loss so far (its epoch; -1: before training).
        std::map<std::string, torch::Tensor> best = Snapshot(*block);
        double best_val = report.initial_val_loss;
        double last_val = report.initial_val_loss;
        const int64_t n = q_train.size(0);
        const int64_t per_epoch = (n + options.batch_size - 1) / options.batch_size;
        const int64_t total = per_epoch * options.epochs;
        const int64_t start = prefix != nullptr ? prefix->length() : 0;
        const model::LayerKv* past =
            prefix != nullptr && !prefix->empty() ? &prefix->layers[layer] : nullptr;
        auto gen = at::detail::createCPUGenerator(options.seed + static_cast<uint64_t>(layer));
        int64_t step = 0;
        double lr = options.quant_lr;
        std::unique_ptr<torch::optim::AdamW> optimizer;
        LossScaler scaler = LossScaler::For(q_train.scalar_type());
        std::vector<torch::Tensor> trained_params = quant_params;
        trained_params.insert(trained_params.end(), weight_params.begin(), weight_params.end());
        if (!groups.empty()) {
          optimizer = std::make_unique<torch::optim::AdamW>(std::move(groups));
        }
        for (int epoch = 0; optimizer && epoch < options.epochs && !report.rolled_back; ++epoch) {
          const torch::Tensor order = torch::randperm(n, gen, torch::kInt64);
          for (int64_t b = 0; b < per_epoch; ++b, ++step) {
            if (callbacks.cancelled && callbacks.cancelled()) {
              return absl::CancelledError(absl::StrCat("fine-tuning cancelled in block ", layer));
            }
            const int64_t first = b * options.batch_size;
            const torch::Tensor idx =
                order.narrow(0, first, std::min(options.batch_size, n - first))
                    .to(q_train.device());
            for (size_t g = 0; g < base_lr.size(); ++g) {
              const double r = CosineLearningRate(base_lr[g], step, total);
              static_cast<torch::optim::AdamWOptions&>(optimizer->param_groups()[g].options())
                  .lr(r);
              if (g == 0) lr = r;
            }
            optimizer->zero_grad();
            const torch::Tensor out =
                model.RunBlock(layer, q_train.index_select(0, idx), start, past, nullptr, nullptr);
            const torch::Tensor loss = torch::mse_loss(
                out.to(torch::kFloat32), target_train.index_select(0, idx).to(torch::kFloat32));
            const double value = loss.item<double>();
            if (!std::isfinite(value)) {
              report.rolled_back = true;
              break;
            }
            scaler.Scale(loss).backward();
            if (scaler.Unscale(trained_params)) optimizer->step();
            if (callbacks.on_loss && (step % options.log_every == 0 || step == total - 1)) {
              callbacks.on_loss(
                  LossPoint{TrainPhase::kFinetune, layer, epoch, step, "train", value, {}, lr});
            }
          }
          if (report.rolled_back) break;
          const double epoch_val = Mse(model, layer, sel_in, sel_target, prefix);
          if (callbacks.on_loss) {
            callbacks.on_loss(
                LossPoint{TrainPhase::kFinetune, layer, epoch, step - 1, "val", epoch_val, {}, lr});
          }
          if (!std::isfinite(epoch_val)) {
            report.rolled_back = true;
          } else {
            last_val = epoch_val;
            report.last_epoch = epoch;
            if (epoch_val < best_val || !std::isfinite(best_val) || !options.keep_best_state) {
              best = Snapshot(*block);
              best_val = epoch_val;
              report.kept_epoch = epoch;
            }
          }
        }
        report.steps = step;
        if (scaler.skipped_steps() > 0) {
          log(
              absl::StrFormat("block %d: %d float16 step(s) skipped for non-finite gradients "
                              "(loss scale now %g)",
                              layer, scaler.skipped_steps(), scaler.scale()));
        }
        optimizer.reset();
        SetRequiresGrad(quant_params, false);
        SetRequiresGrad(weight_params, false);
        if (report.rolled_back || report.kept_epoch != report.last_epoch) {
          RETURN_IF_ERROR(Restore(*block, best, layer));
        }
        if (report.rolled_back) {
          ++failures;
          log(
              absl::StrFormat("warning: block %d: non-finite loss at step %d; restored its best "
                              "finite state and moved on (%d numerical failure(s))",
                              layer, step, failures));
          if (failures > options.max_numerical_failures) {
            return NumericalFailure(absl::StrCat(failures, " blocks diverged (limit ",
                                                 options.max_numerical_failures, ")"));
          }
        } else if (report.kept_epoch != report.last_epoch) {
          const std::string when = report.kept_epoch < 0
                                       ? std::string("before fine-tuning")
                                       : absl::StrCat("after epoch ", report.kept_epoch);
          log(absl::StrFormat(
              "block %d: validation loss %.6g after the last epoch is above %.6g %s; kept that "
              "state",
              layer, last_val, best_val, when));
        }
      }
      block->Finish();
      if (!report.from_checkpoint) {
        report.final_val_loss = Mse(model, layer, sel_in, sel_target, prefix);
        if (!std::isfinite(report.final_val_loss)) {
          return NumericalFailure(absl::StrCat("block ", layer, " is not finite after rollback"));
        }
      }
      // Next block: FP inputs are this block's targets; quantized inputs go through it.
      q_train = RunAll(model, layer, q_train, prefix);
      if (q_val.defined()) q_val = RunAll(model, layer, q_val, prefix);
      fp_train = target_train;
      fp_val = target_val;
      if (!report.from_checkpoint) {
        if (!options.checkpoint_dir.empty()) {
          std::map<std::string, torch::Tensor> state;
          for (auto& [name, t] : block->State()) state[name] = t.detach();
          checkpoint.block_states.resize(layer);
          checkpoint.block_stats.resize(layer);
          checkpoint.block_states.push_back(std::move(state));
          checkpoint.block_stats.push_back(
              {report.initial_val_loss, report.final_val_loss, static_cast<double>(report.steps),
               report.rolled_back ? 1.0 : 0.0, static_cast<double>(report.kept_epoch),
               static_cast<double>(report.last_epoch)});
          checkpoint.next_block = layer + 1;
          // A checkpoint only saves work for a rerun: a failed save (a full disk) is a warning.
          if (absl::Status saved = SaveFinetuneCheckpoint(options.checkpoint_dir, checkpoint);
              !saved.ok()) {
            log(absl::StrCat("warning: fine-tuning checkpoint not saved after block ", layer, " (",
                             saved.message(), "); going on without it"));
          }
        }
      }
      result.blocks.push_back(report);
    }
    result.peak_rss_bytes = PeakRss();
    return result;
  } catch (const std::exception& e) {
    return absl::InternalError(absl::StrCat("fine-tuning failed: ", e.what()));
  }
}

}  // namespace quantd::train
