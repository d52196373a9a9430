#include "worker/train/prefix_trainer.h"

#include <algorithm>
#include <cmath>
#include <map>
#include <optional>
#include <set>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "proto/common/status_macros.h"
#include "worker/train/loss_scaler.h"

namespace quantd::train {
namespace {

torch::Tensor WindowIds(const std::vector<std::vector<int32_t>>& windows) {
  const int64_t len = static_cast<int64_t>(windows[0].size());
  std::vector<int64_t> flat;
  flat.reserve(windows.size() * len);
  for (const auto& w : windows) flat.insert(flat.end(), w.begin(), w.end());
  return torch::tensor(flat, torch::kInt64).view({static_cast<int64_t>(windows.size()), len});
}

absl::Status CheckWindows(const std::vector<std::vector<int32_t>>& windows, int64_t vocab,
                          const char* what) {
  for (const auto& w : windows) {
    if (w.size() != windows[0].size() || w.empty()) {
      return absl::InvalidArgumentError(absl::StrCat(what, " windows differ in length"));
    }
    for (int32_t id : w) {
      if (id < 0 || id >= vocab) {
        return absl::InvalidArgumentError(
            absl::StrCat(what, " window holds token id ", id, " outside the vocabulary"));
      }
    }
  }
  return absl::OkStatus();
}

// Keeps one site's activation of the wanted layers.
class SiteObserver : public model::ActivationObserver {
 public:
  SiteObserver(model::ActivationSite site, const std::set<int>& layers)
      : site_(site), layers_(layers) {}
  bool Wants(int layer, model::ActivationSite site) const override {
    return site == site_ && layers_.count(layer) > 0;
  }
  void Observe(int, model::ActivationSite, const torch::Tensor& x) override { seen.push_back(x); }
  std::vector<torch::Tensor> seen;

 private:
  model::ActivationSite site_;
  std::set<int> layers_;
};

// [prefix ; embeds] for every row of `embeds` (prefix undefined: embeds).
torch::Tensor PrefixedInput(const torch::Tensor& prefix, const torch::Tensor& embeds) {
  if (!prefix.defined() || prefix.size(0) == 0) return embeds;
  return torch::cat({prefix.to(embeds.scalar_type())
                         .unsqueeze(0)
                         .expand({embeds.size(0), prefix.size(0), prefix.size(1)}),
                     embeds},
                    1);
}

// Runs [prefix ; embeds] through blocks 0..max(layers) and returns the targets' non-prefix part
// at `site`, in layer order; `block_inputs` (optional) receives every block's input.
std::vector<torch::Tensor> TargetOutputs(model::LlamaModel& model, const torch::Tensor& prefix,
                                         const torch::Tensor& embeds,
                                         const std::vector<int>& layers, model::ActivationSite site,
                                         std::vector<torch::Tensor>* block_inputs = nullptr) {
  const int64_t p = prefix.defined() ? prefix.size(0) : 0;
  torch::Tensor hidden = PrefixedInput(prefix, embeds);
  const int last = *std::max_element(layers.begin(), layers.end());
  const std::set<int> wanted(layers.begin(), layers.end());
  SiteObserver observer(site, wanted);
  for (int l = 0; l <= last; ++l) {
    if (block_inputs != nullptr) block_inputs->push_back(hidden);
    hidden = model.RunBlock(l, hidden, 0, nullptr, nullptr, &observer);
  }
  std::vector<torch::Tensor> out;
  for (const auto& x : observer.seen) out.push_back(x.narrow(1, p, x.size(1) - p));
  return out;
}

// One step's forward for block-wise back-propagation: every block's input, and the targets'
// non-prefix activations as leaves that collect the loss's gradient (in layer order, as
// TargetOutputs returns them).
struct BlockwisePass {
  std::vector<torch::Tensor> inputs;  // block l's input, l = 0..max(layers)
  std::vector<int> target_layers;     // ascending, unique
  std::vector<torch::Tensor> targets;
};

BlockwisePass BlockwiseForward(model::LlamaModel& model, const torch::Tensor& prefix,
                               const torch::Tensor& embeds, const std::vector<int>& layers,
                               model::ActivationSite site) {
  torch::NoGradGuard no_grad;
  const std::set<int> wanted(layers.begin(), layers.end());
  BlockwisePass pass;
  pass.target_layers.assign(wanted.begin(), wanted.end());
  for (const auto& x : TargetOutputs(model, prefix, embeds, layers, site, &pass.inputs)) {
    pass.targets.push_back(x.clone().requires_grad_(true));
  }
  return pass;
}

// After the loss's backward (the targets' and the prefix's own gradients): from the last target
// layer down, each block runs again with autograd on its stored input and is back-propagated
// alone, with the gradient arriving at its output and, for a target, at its site; the gradient
// left at block 0's input is added to the prefix's. The same gradient as one backward over the
// whole pass (up to the order of floating-point sums), with one block's graph alive at a time.
void BlockwiseBackward(model::LlamaModel& model, BlockwisePass& pass, torch::Tensor& prefix,
                       model::ActivationSite site) {
  const int64_t p = prefix.size(0);
  torch::Tensor grad;  // of the loss with respect to block l's output
  int t = static_cast<int>(pass.targets.size()) - 1;
  for (int l = static_cast<int>(pass.inputs.size()) - 1; l >= 0; --l) {
    const bool target = t >= 0 && pass.target_layers[t] == l;
    torch::Tensor x = pass.inputs[l].detach().requires_grad_(true);
    pass.inputs[l] = torch::Tensor();
    SiteObserver observer(site, target ? std::set<int>{l} : std::set<int>{});
    const torch::Tensor out = model.RunBlock(l, x, 0, nullptr, nullptr, &observer);
    std::vector<torch::Tensor> roots, grads;
    if (grad.defined()) {
      roots.push_back(out);
      grads.push_back(grad);
    }
    if (target) {
      const torch::Tensor& seen = observer.seen.at(0);
      if (pass.targets[t].grad().defined()) {
        roots.push_back(seen.narrow(1, p, seen.size(1) - p));
        grads.push_back(pass.targets[t].grad());
      }
      --t;
    }
    if (roots.empty()) return;  // nothing below depends on the loss
    torch::autograd::backward(roots, grads);
    grad = x.grad();
  }
  torch::NoGradGuard no_grad;
  const torch::Tensor through_blocks = grad.narrow(1, 0, p).sum(0).to(prefix.scalar_type());
  if (prefix.grad().defined()) {
    prefix.mutable_grad().add_(through_blocks);
  } else {
    prefix.mutable_grad() = through_blocks;
  }
}

std::vector<int> ResolveLayers(const model::LlamaModel& model, const std::vector<int>& layers) {
  if (!layers.empty()) return layers;
  std::vector<int> all(model.blocks.size());
  for (size_t i = 0; i < all.size(); ++i) all[i] = static_cast<int>(i);
  return all;
}

// Initial rows: given ids, then frequent window tokens, then seeded random rows.
torch::Tensor InitialPrefix(const model::LlamaModel& model,
                            const std::vector<std::vector<int32_t>>& train,
                            const PrefixTrainOptions& options, std::vector<int32_t>* init_ids) {
  const int64_t p = options.prefix_len;
  std::vector<int32_t> ids;
  std::set<int32_t> used;
  for (int32_t id : options.init_token_ids) {
    if (static_cast<int64_t>(ids.size()) == p) break;
    ids.push_back(id);
    used.insert(id);
  }
  if (static_cast<int64_t>(ids.size()) < p) {
    std::map<int32_t, int64_t> counts;
    for (const auto& w : train) {
      for (int32_t id : w) ++counts[id];
    }
    std::vector<std::pair<int64_t, int32_t>> order;
    for (const auto& [id, n] : counts) order.emplace_back(-n, id);
    std::sort(order.begin(), order.end());
    for (const auto& [neg, id] : order) {
      if (static_cast<int64_t>(ids.size()) == p) break;
      if (used.insert(id).second) ids.push_back(id);
    }
  }
  torch::NoGradGuard no_grad;
  const torch::Tensor table = model.embed_tokens.to(torch::kFloat32);
  torch::Tensor rows = torch::empty({p, table.size(1)}, table.options());
  for (size_t i = 0; i < ids.size(); ++i) rows[i].copy_(table[ids[i]]);
  if (static_cast<int64_t>(ids.size()) < p) {
    auto gen = at::detail::createCPUGenerator(options.seed);
    const int64_t missing = p - static_cast<int64_t>(ids.size());
    torch::Tensor noise = at::normal(0.0, 1.0, {missing, table.size(1)}, gen) * table.std();
    rows.narrow(0, static_cast<int64_t>(ids.size()), missing).copy_(noise.to(rows.device()));
  }
  *init_ids = ids;
  init_ids->resize(p, -1);
  return rows;
}

void SetLr(torch::optim::Optimizer& optimizer, double lr) {
  for (auto& group : optimizer.param_groups()) {
    static_cast<torch::optim::AdamWOptions&>(group.options()).lr(lr);
  }
}

}  // namespace

void NearestTokens(const torch::Tensor& embeds, const torch::Tensor& embedding_matrix,
                   std::vector<int32_t>* ids, std::vector<double>* cosine) {
  torch::NoGradGuard no_grad;
  namespace F = torch::nn::functional;
  const auto opts = F::NormalizeFuncOptions().dim(1).eps(1e-12);
  const torch::Tensor a = F::normalize(embeds.to(torch::kFloat32), opts);
  const torch::Tensor b = F::normalize(embedding_matrix.to(torch::kFloat32), opts);
  const auto [best, index] = torch::matmul(a, b.t()).max(1);
  ids->clear();
  cosine->clear();
  for (int64_t i = 0; i < index.size(0); ++i) {
    ids->push_back(static_cast<int32_t>(index[i].item<int64_t>()));
    cosine->push_back(best[i].item<double>());
  }
}

std::vector<torch::Tensor> NonPrefixActivations(model::LlamaModel& model,
                                                const torch::Tensor& prefix_embeds,
                                                const std::vector<std::vector<int32_t>>& windows,
                                                const std::vector<int>& layers,
                                                model::ActivationSite site) {
  torch::NoGradGuard no_grad;
  const torch::Tensor embeds = model.Embed(WindowIds(windows).to(model.device()));
  return TargetOutputs(model, prefix_embeds, embeds, ResolveLayers(model, layers), site);
}

absl::StatusOr<PrefixTrainResult> TrainPrefix(model::LlamaModel& model,
                                              const std::vector<std::vector<int32_t>>& train,
                                              const std::vector<std::vector<int32_t>>& val,
                                              const PrefixTrainOptions& options,
                                              const TrainCallbacks& callbacks) {
  if (train.empty()) return absl::InvalidArgumentError("prefix training: no training window");
  if (options.prefix_len < 1) return absl::InvalidArgumentError("prefix training: prefix_len < 1");
  if (options.batch_size < 1) return absl::InvalidArgumentError("prefix training: batch_size < 1");
  const int64_t vocab = model.config().vocab_size;
  RETURN_IF_ERROR(CheckWindows(train, vocab, "training"));
  RETURN_IF_ERROR(CheckWindows(val, vocab, "validation"));
  if (!val.empty() && val[0].size() != train[0].size()) {
    return absl::InvalidArgumentError("prefix training: validation windows differ in length");
  }
  const std::vector<int> layers = ResolveLayers(model, options.target_layers);
  for (int l : layers) {
    if (l < 0 || l >= static_cast<int>(model.blocks.size())) {
      return absl::InvalidArgumentError(absl::StrCat("prefix training: no layer ", l));
    }
  }
  for (int32_t id : options.init_token_ids) {
    if (id < 0 || id >= vocab) {
      return absl::InvalidArgumentError(
          absl::StrCat("prefix training: init token ", id, " outside the vocabulary"));
    }
  }
  auto log = [&](const std::string& line) {
    if (callbacks.on_log) callbacks.on_log(line);
  };
  try {
    PrefixTrainResult result;
    torch::Tensor prefix =
        InitialPrefix(model, train, options, &result.init_ids).to(model.device());
    prefix.set_requires_grad(true);
    torch::Tensor train_embeds, val_embeds;
    {
      torch::NoGradGuard no_grad;
      train_embeds = model.Embed(WindowIds(train).to(model.device()));
      if (!val.empty()) val_embeds = model.Embed(WindowIds(val).to(model.device()));
    }
    auto evaluate = [&](const torch::Tensor& embeds) {
      torch::NoGradGuard no_grad;
      double sum = 0.0;
      int64_t batches = 0;
      for (int64_t first = 0; first < embeds.size(0); first += options.batch_size) {
        const int64_t n = std::min(options.batch_size, embeds.size(0) - first);
        auto outs = TargetOutputs(model, prefix, embeds.narrow(0, first, n), layers, options.site);
        sum += ComputePrefixLoss(outs, prefix, options.loss).total.item<double>();
        ++batches;
      }
      return sum / static_cast<double>(batches);
    };
    const torch::Tensor& select_embeds = val.empty() ? train_embeds : val_embeds;
    result.initial_loss = evaluate(select_embeds);
    if (!std::isfinite(result.initial_loss)) {
      return NumericalFailure("prefix training: the initial prefix's loss is not finite");
    }
    result.best_loss = result.initial_loss;
    torch::Tensor best = prefix.detach().clone();

    torch::optim::AdamW optimizer(
        std::vector<torch::Tensor>{prefix},
        torch::optim::AdamWOptions(options.lr).weight_decay(options.weight_decay));
    LossScaler scaler = LossScaler::For(train_embeds.scalar_type());
    const int64_t n = train_embeds.size(0);
    const int64_t per_epoch = (n + options.batch_size - 1) / options.batch_size;
    const int64_t total_steps = per_epoch * options.epochs;
    auto gen = at::detail::createCPUGenerator(options.seed);
    int64_t step = 0;
    double lr = options.lr;
    bool diverged = false;
    for (int epoch = 0; epoch < options.epochs && !diverged; ++epoch) {
      const torch::Tensor order = torch::randperm(n, gen, torch::kInt64);
      double epoch_sum = 0.0;
      for (int64_t b = 0; b < per_epoch; ++b, ++step) {
        if (callbacks.cancelled && callbacks.cancelled()) {
          return absl::CancelledError("prefix training cancelled");
        }
        const int64_t first = b * options.batch_size;
        const torch::Tensor idx =
            order.narrow(0, first, std::min(options.batch_size, n - first)).to(model.device());
        lr = CosineLearningRate(options.lr, step, total_steps);
        SetLr(optimizer, lr);
        optimizer.zero_grad();
        const torch::Tensor batch = train_embeds.index_select(0, idx);
        std::optional<BlockwisePass> pass;
        PrefixLoss loss;
        if (options.blockwise_backward) {
          pass = BlockwiseForward(model, prefix, batch, layers, options.site);
          loss = ComputePrefixLoss(pass->targets, prefix, options.loss);
        } else {
          loss = ComputePrefixLoss(TargetOutputs(model, prefix, batch, layers, options.site),
                                   prefix, options.loss);
        }
        const double value = loss.total.item<double>();
        if (!std::isfinite(value)) {
          log(
              absl::StrFormat("warning: prefix training loss is %f at step %d; keeping the best "
                              "prefix so far and stopping",
                              value, step));
          diverged = true;
          break;
        }
        scaler.Scale(loss.total).backward();
        if (pass.has_value()) BlockwiseBackward(model, *pass, prefix, options.site);
        if (scaler.Unscale({prefix})) optimizer.step();
        epoch_sum += value;
        if (callbacks.on_loss) {
          callbacks.on_loss(LossPoint{TrainPhase::kPrefix, -1, epoch, step, "train", value,
                                      loss.Components(), lr});
        }
      }
      if (diverged) break;
      const double epoch_loss =
          val.empty() ? epoch_sum / static_cast<double>(per_epoch) : evaluate(val_embeds);
      if (callbacks.on_loss) {
        callbacks.on_loss(
            LossPoint{TrainPhase::kPrefix, -1, epoch, step - 1, "val", epoch_loss, {}, lr});
      }
      if (std::isfinite(epoch_loss) && epoch_loss < result.best_loss) {
        result.best_loss = epoch_loss;
        result.best_epoch = epoch;
        best = prefix.detach().clone();
      }
    }
    result.steps = step;
    result.embeddings = best.to(model.dtype());
    NearestTokens(best, model.embed_tokens, &result.nearest_ids, &result.nearest_cosine);
    if (options.tokenizer != nullptr) {
      for (int32_t id : result.nearest_ids) {
        auto text = options.tokenizer->Decode({id});
        result.nearest_text.push_back(text.ok() ? *text : "");
      }
    }
    return result;
  } catch (const std::exception& e) {
    return absl::InternalError(absl::StrCat("prefix training failed: ", e.what()));
  }
}

}  // namespace quantd::train
