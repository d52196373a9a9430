// Zero-shot multiple-choice accuracy (DESIGN.md §3.9), scored as lm-evaluation-harness scores a
// causal LM: each choice's continuation is ranked by the sum of its tokens' log-likelihoods
// after the context. acc picks the largest sum; acc_norm divides each sum by the choice's
// length in characters first.
//
// Every request is a document of its own: BOS, the context, the continuation. After a prefix
// KV cache that ends in BOS the request's own BOS is left out (no double BOS), and the first
// token is predicted by the prefix's last logits. (The harness by default gives a Llama no BOS;
// quantd starts every request as its perplexity windows start, so full-precision accuracies
// may differ a little from the harness's defaults.) The context is tokenized alone and the
// continuation is what tokenizing both together adds after it (trailing spaces of the context
// move to the continuation); a request longer than the model's positions loses the start of
// its context.
#ifndef QUANTD_WORKER_EVAL_MULTIPLE_CHOICE_H_
#define QUANTD_WORKER_EVAL_MULTIPLE_CHOICE_H_

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "worker/eval/task_file.h"
#include "worker/model/llama.h"
#include "worker/model/tokenizer.h"

namespace quantd::eval {

struct ChoiceTokens {
  std::vector<int32_t> context;
  std::vector<int32_t> continuation;  // never empty
};

struct TokenizedTask {
  std::string name;
  std::string layout;
  std::vector<std::vector<ChoiceTokens>> choices;   // [example][choice]
  std::vector<std::vector<double>> choice_lengths;  // [example][choice], in characters
  std::vector<int> labels;
};

// INVALID_ARGUMENT naming the example and choice when a continuation adds no token.
absl::StatusOr<TokenizedTask> TokenizeTask(const model::Tokenizer& tokenizer,
                                           const MultipleChoiceTask& task);

// Reads and tokenizes the tasks of an eval.eval_tasks list ("name=path,path", see
// proto/spec/eval_tasks.h) in order, the first `limit` examples of each (0: all).
// INVALID_ARGUMENT for a bad list or task file, NOT_FOUND for a missing one; both name the task.
absl::StatusOr<std::vector<TokenizedTask>> LoadTasks(absl::string_view eval_tasks,
                                                     const model::Tokenizer& tokenizer,
                                                     int64_t limit = 0);

// An unscored context before every request; not owned.
struct ScoringPrefix {
  const model::KvCache* kv = nullptr;  // batch 1; null: no prefix
  torch::Tensor last_logits;           // [vocab]: the prediction after the prefix's last token
  int64_t length = 0;                  // prefix tokens (positions the cache takes)
  bool ends_with_bos = false;
};

struct MultipleChoiceOptions {
  int64_t batch_size = 16;  // requests per forward pass
  int32_t bos_id = -1;      // -1: the tokenizer has no BOS; requests start with their context
  int64_t max_length = 0;   // positions a request may use, prefix included; 0: the model's
  ScoringPrefix prefix;
};

struct MultipleChoiceResult {
  int64_t examples = 0;
  double accuracy = 0;
  double accuracy_norm = 0;
  double accuracy_stderr = 0;                       // sqrt(acc (1 - acc) / (n - 1))
  std::vector<std::vector<double>> loglikelihoods;  // [example][choice], nats
  // Examples with a NaN or Inf log-likelihood (a model that overflows). When there are any, the
  // three accuracies are NaN: an argmax over NaN would read as a real, chance-level score.
  int64_t non_finite_examples = 0;
};

// Runs without autograd, the longest requests first, right-padded batches (causal attention
// never lets a real token see the padding after it); the LM head runs on the scored positions
// only, in blocks of at most kMaxLogitElements logits. `progress(done, total)` counts scored
// requests (one per choice of every example); returning false stops with CANCELLED.
// INVALID_ARGUMENT for a task without examples, a continuation that does not fit the model's
// positions, or batch_size < 1; forward errors pass through.
absl::StatusOr<MultipleChoiceResult> EvaluateMultipleChoice(
    model::LlamaModel& model, const TokenizedTask& task, const MultipleChoiceOptions& options,
    const std::function<bool(int64_t, int64_t)>& progress = {});

}  // namespace quantd::eval

#endif  // QUANTD_WORKER_EVAL_MULTIPLE_CHOICE_H_
