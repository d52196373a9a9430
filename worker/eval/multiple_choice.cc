#include "worker/eval/multiple_choice.h"

#include <algorithm>
#include <cmath>
#include <numeric>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "proto/common/status_macros.h"
#include "proto/spec/eval_tasks.h"
#include "worker/eval/perplexity.h"

namespace quantd::eval {
namespace {

struct Request {
  size_t example = 0;
  size_t choice = 0;
  std::vector<int64_t> fed;  // the tokens that go through the model
  int64_t scored = 0;        // the last `scored` tokens of `fed` are the continuation
};

// Index of the largest value; the first one on ties.
size_t ArgMax(const std::vector<double>& values) {
  return static_cast<size_t>(std::max_element(values.begin(), values.end()) - values.begin());
}

}  // namespace

absl::StatusOr<TokenizedTask> TokenizeTask(const model::Tokenizer& tokenizer,
                                           const MultipleChoiceTask& task) {
  TokenizedTask out;
  out.name = task.name;
  out.layout = task.layout;
  for (size_t e = 0; e < task.examples.size(); ++e) {
    const MultipleChoiceExample& example = task.examples[e];
    std::vector<ChoiceTokens> choices;
    std::string last_context;
    for (size_t c = 0; c < example.continuations.size(); ++c) {
      std::string context = example.contexts[c];
      std::string continuation = example.continuations[c];
      const size_t kept = context.find_last_not_of(" \t\n\r");
      const size_t cut = kept == std::string::npos ? 0 : kept + 1;
      continuation = context.substr(cut) + continuation;
      context.resize(cut);
      ChoiceTokens tokens;
      if (c > 0 && context == last_context) {  // most layouts share one context per example
        tokens.context = choices.back().context;
      } else if (!context.empty()) {
        ASSIGN_OR_RETURN(tokens.context, tokenizer.Encode(context));
      }
      last_context = context;
      ASSIGN_OR_RETURN(std::vector<int32_t> whole, tokenizer.Encode(context + continuation));
      if (whole.size() > tokens.context.size()) {
        tokens.continuation.assign(whole.begin() + tokens.context.size(), whole.end());
      }
      if (tokens.continuation.empty()) {
        return absl::InvalidArgumentError(
            absl::StrCat("task ", task.name, ": example ", e + 1, ", choice ", c + 1,
                         ": the continuation \"", example.continuations[c], "\" adds no token"));
      }
      choices.push_back(std::move(tokens));
    }
    out.choices.push_back(std::move(choices));
    out.choice_lengths.push_back(example.choice_lengths);
    out.labels.push_back(example.label);
  }
  return out;
}

absl::StatusOr<std::vector<TokenizedTask>> LoadTasks(absl::string_view eval_tasks,
                                                     const model::Tokenizer& tokenizer,
                                                     int64_t limit) {
  ASSIGN_OR_RETURN(std::vector<EvalTaskFile> files, ParseEvalTasks(eval_tasks));
  std::vector<TokenizedTask> tasks;
  for (const auto& file : files) {
    ASSIGN_OR_RETURN(MultipleChoiceTask task, ReadTaskFile(file.path, file.name, limit));
    ASSIGN_OR_RETURN(TokenizedTask tokenized, TokenizeTask(tokenizer, task));
    tasks.push_back(std::move(tokenized));
  }
  return tasks;
}

absl::StatusOr<MultipleChoiceResult> EvaluateMultipleChoice(
    model::LlamaModel& model, const TokenizedTask& task, const MultipleChoiceOptions& options,
    const std::function<bool(int64_t, int64_t)>& progress) {
  if (options.batch_size < 1) {
    return absl::InvalidArgumentError("multiple choice: batch_size must be >= 1");
  }
  if (task.choices.empty()) {
    return absl::InvalidArgumentError(absl::StrCat("task ", task.name, " has no examples"));
  }
  const ScoringPrefix& prefix = options.prefix;
  const bool has_prefix = prefix.kv != nullptr;
  const bool lead_bos = options.bos_id >= 0 && !(has_prefix && prefix.ends_with_bos);
  const int64_t positions =
      (options.max_length > 0 ? options.max_length : model.config().max_position_embeddings) -
      (has_prefix ? prefix.length : 0);

  std::vector<Request> requests;
  for (size_t e = 0; e < task.choices.size(); ++e) {
    for (size_t c = 0; c < task.choices[e].size(); ++c) {
      const ChoiceTokens& tokens = task.choices[e][c];
      const int64_t scored = static_cast<int64_t>(tokens.continuation.size());
      const int64_t room = positions - (lead_bos ? 1 : 0) - scored;
      // The first continuation token needs something before it: a BOS, a context token or
      // the prefix's last logits.
      const bool predictable = lead_bos || has_prefix || (room > 0 && !tokens.context.empty());
      if (room < 0 || !predictable) {
        return absl::InvalidArgumentError(absl::StrCat(
            "task ", task.name, ": example ", e + 1, ", choice ", c + 1, ": ",
            predictable ? absl::StrCat("the continuation's ", scored, " tokens exceed the ",
                                       positions, " positions the model has")
                        : std::string("nothing comes before the continuation to predict it")));
      }
      Request request;
      request.example = e;
      request.choice = c;
      request.scored = scored;
      if (lead_bos) request.fed.push_back(options.bos_id);
      const int64_t context = static_cast<int64_t>(tokens.context.size());
      const int64_t kept = std::min(context, room);
      request.fed.insert(request.fed.end(), tokens.context.end() - kept, tokens.context.end());
      request.fed.insert(request.fed.end(), tokens.continuation.begin(), tokens.continuation.end());
      requests.push_back(std::move(request));
    }
  }
  std::vector<size_t> order(requests.size());
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) {
    return requests[a].fed.size() > requests[b].fed.size();
  });

  MultipleChoiceResult out;
  out.examples = static_cast<int64_t>(task.choices.size());
  out.loglikelihoods.resize(task.choices.size());
  for (size_t e = 0; e < task.choices.size(); ++e) {
    out.loglikelihoods[e].assign(task.choices[e].size(), 0.0);
  }
  const int64_t total = static_cast<int64_t>(requests.size());
  try {
    torch::NoGradGuard no_grad;
    torch::Tensor prefix_log_probs;  // from the prefix's last logits, on the device, made once
    for (int64_t first = 0; first < total; first += options.batch_size) {
      const int64_t count = std::min(options.batch_size, total - first);
      const int64_t width = static_cast<int64_t>(requests[order[first]].fed.size());
      std::vector<int64_t> flat(count * width, 0);
      for (int64_t i = 0; i < count; ++i) {
        const auto& fed = requests[order[first + i]].fed;
        std::copy(fed.begin(), fed.end(), flat.begin() + i * width);
      }
      model::ForwardRequest forward;
      forward.input_ids = torch::tensor(flat, torch::kInt64).view({count, width});
      forward.past = prefix.kv;
      forward.logits = model::LogitsMode::kNone;  // the head runs on the scored rows only
      ASSIGN_OR_RETURN(model::ForwardResult result, model.Forward(forward));
      // Every scored token of the batch at once: the hidden row that predicts it (or the
      // prefix's last logits, for a first token), its id and its request; one copy back.
      const torch::Device device = result.hidden.device();
      std::vector<int64_t> hidden_rows, hidden_targets, hidden_slots;
      std::vector<int64_t> prefix_targets, prefix_slots;
      std::vector<int64_t> owners;  // per scored token: its request's row in the batch
      for (int64_t i = 0; i < count; ++i) {
        const Request& request = requests[order[first + i]];
        const int64_t length = static_cast<int64_t>(request.fed.size());
        for (int64_t j = length - request.scored; j < length; ++j) {
          const int64_t slot = static_cast<int64_t>(owners.size());
          if (j >= 1) {
            hidden_rows.push_back(i * width + j - 1);
            hidden_targets.push_back(request.fed[j]);
            hidden_slots.push_back(slot);
          } else {
            prefix_targets.push_back(request.fed[j]);
            prefix_slots.push_back(slot);
          }
          owners.push_back(i);
        }
      }
      auto on_device = [&](const std::vector<int64_t>& values) {
        return torch::tensor(values, torch::kInt64).to(device);
      };
      torch::Tensor log_probs =
          torch::empty({static_cast<int64_t>(owners.size())},
                       torch::TensorOptions().dtype(torch::kFloat64).device(device));
      if (!hidden_rows.empty()) {
        const torch::Tensor hidden = result.hidden.reshape({count * width, -1});
        log_probs.index_copy_(
            0, on_device(hidden_slots),
            TargetLogProbsFromHidden(model, hidden.index_select(0, on_device(hidden_rows)),
                                     on_device(hidden_targets)));
      }
      if (!prefix_targets.empty()) {
        if (!prefix_log_probs.defined()) {
          prefix_log_probs =
              torch::log_softmax(prefix.last_logits.to(device, torch::kFloat32).view({-1}), -1)
                  .to(torch::kFloat64);
        }
        log_probs.index_copy_(0, on_device(prefix_slots),
                              prefix_log_probs.index_select(0, on_device(prefix_targets)));
      }
      const torch::Tensor sums = torch::zeros({count}, log_probs.options())
                                     .index_add_(0, on_device(owners), log_probs)
                                     .cpu();
      const auto sum_of = sums.accessor<double, 1>();
      for (int64_t i = 0; i < count; ++i) {
        const Request& request = requests[order[first + i]];
        out.loglikelihoods[request.example][request.choice] = sum_of[i];
      }
      if (progress && !progress(first + count, total)) {
        return absl::CancelledError("evaluation cancelled");
      }
    }
  } catch (const std::exception& e) {
    return absl::InternalError(absl::StrCat("multiple choice failed: ", e.what()));
  }

  int64_t right = 0, right_norm = 0;
  for (size_t e = 0; e < task.choices.size(); ++e) {
    const auto& sums = out.loglikelihoods[e];
    if (!std::all_of(sums.begin(), sums.end(), [](double v) { return std::isfinite(v); })) {
      ++out.non_finite_examples;
    }
    std::vector<double> normalised(sums.size());
    for (size_t c = 0; c < sums.size(); ++c) {
      normalised[c] = sums[c] / std::max(1.0, task.choice_lengths[e][c]);
    }
    const size_t label = static_cast<size_t>(task.labels[e]);
    right += ArgMax(sums) == label ? 1 : 0;
    right_norm += ArgMax(normalised) == label ? 1 : 0;
  }
  const double n = static_cast<double>(out.examples);
  out.accuracy = right / n;
  out.accuracy_norm = right_norm / n;
  out.accuracy_stderr =
      out.examples > 1 ? std::sqrt(out.accuracy * (1 - out.accuracy) / (n - 1)) : 0.0;
  if (out.non_finite_examples > 0) {
    out.accuracy = out.accuracy_norm = out.accuracy_stderr = std::nan("");
  }
  return out;
}

}  // namespace quantd::eval
