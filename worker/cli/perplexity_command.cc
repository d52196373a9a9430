#include <cmath>
#include <cstdio>
#include <memory>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "nlohmann/json.hpp"
#include "worker/cli/commands.h"
#include "worker/cli/model_flags.h"
#include "worker/eval/perplexity.h"
#include "worker/eval/token_stream.h"
#include "worker/model/dtype_names.h"
#include "worker/model/tokenizer.h"

namespace quantd::cli {
namespace {

absl::Status Perplexity(const std::vector<std::string>& argv, std::ostream& out, bool* usage) {
  std::set<std::string> known = ModelFlagNames();
  known.insert({"text", "seqlen", "max-windows", "documents", "batch-size"});
  *usage = true;
  auto args = Args::Parse(argv, known);
  if (!args.ok()) return args.status();
  auto model_dir = args->Require("model");
  if (!model_dir.ok()) return model_dir.status();
  auto text_path = args->Require("text");
  if (!text_path.ok()) return text_path.status();
  auto seqlen = args->GetInt("seqlen", 2048, 2);
  if (!seqlen.ok()) return seqlen.status();
  auto max_windows = args->GetInt("max-windows", 0, 0);
  if (!max_windows.ok()) return max_windows.status();
  auto batch_size = args->GetInt("batch-size", 4, 1);
  if (!batch_size.ok()) return batch_size.status();
  auto mode = eval::ParseDocumentMode(args->Get("documents", "whole"));
  if (!mode.ok()) return mode.status();
  bool json = false;
  if (auto s = OutputFormatFromArgs(*args, &json); !s.ok()) return s;
  if (auto options = LoadOptionsFromArgs(*args); !options.ok()) return options.status();
  *usage = false;

  auto tokenizer = model::LoadTokenizer(*model_dir);
  if (!tokenizer.ok()) return tokenizer.status();
  auto llama = LoadModelFromArgs(*model_dir, *args);
  if (!llama.ok()) return llama.status();
  auto text = eval::ReadTextFile(*text_path);
  if (!text.ok()) return text.status();
  auto tokens = eval::BuildTokenStream(**tokenizer, *text, *mode);
  if (!tokens.ok()) return tokens.status();

  eval::PerplexityOptions ppl;
  ppl.seqlen = *seqlen;
  ppl.max_windows = *max_windows;
  ppl.batch_size = *batch_size;
  absl::StatusOr<eval::PerplexityResult> result;
  if (llama->is_export) {
    // The protocol of a job's evaluation (quant/prefix_cache.h), after the stored prefix.
    quant::WindowEval windows;
    windows.seqlen = *seqlen;
    windows.max_windows = *max_windows;
    windows.batch_size = *batch_size;
    windows.prefix = llama->prefix ? &*llama->prefix : nullptr;
    auto measured = quant::EvaluateWindows(*llama->model, *tokens, windows);
    if (!measured.ok()) return measured.status();
    eval::PerplexityResult r;
    r.windows = static_cast<int64_t>(measured->window_nll.size());
    r.predictions = measured->predictions;
    r.mean_nll = measured->mean_nll;
    r.perplexity = measured->perplexity;
    result = r;
  } else {
    result = eval::EvaluatePerplexity(*llama->model, *tokens, ppl);
  }
  if (!result.ok()) return result.status();

  if (json) {
    nlohmann::json j = {{"model", *model_dir},
                        {"text", *text_path},
                        {"documents", args->Get("documents", "whole")},
                        {"tokens", tokens->size()},
                        {"seqlen", *seqlen},
                        {"windows", result->windows},
                        {"predictions", result->predictions},
                        {"mean_nll", result->mean_nll},
                        {"perplexity", result->perplexity},
                        {"export", llama->is_export},
                        {"device", llama->model->device().str()},
                        {"prefix_tokens", llama->prefix ? llama->prefix->ids.size() : 0}};
    out << j.dump() << "\n";
  } else {
    out << absl::StrFormat(
        "tokens: %d\nwindows: %d x %d\npredictions: %d\nmean nll: %.6f\nperplexity: %.4f\n",
        tokens->size(), result->windows, *seqlen, result->predictions, result->mean_nll,
        result->perplexity);
  }
  if (!std::isfinite(result->perplexity)) {
    return absl::InternalError(
        absl::StrCat("the perplexity is ", result->perplexity,
                     ": the model computes NaN or Inf on this text (an overflow in ",
                     model::DTypeName(llama->model->dtype()), "?)"));
  }
  return absl::OkStatus();
}

}  // namespace

int RunPerplexity(const std::vector<std::string>& args, std::ostream& out, std::ostream& err) {
  return RunCommandBody(
      "perplexity",
      "--model DIR --text FILE [--seqlen N] [--max-windows K] "
      "[--documents whole|blank-line] [--batch-size B] [--output text|json] [--dtype ...] "
      "[--device ...] [--streamed_blocks N]",
      Perplexity, args, out, err);
}

}  // namespace quantd::cli
