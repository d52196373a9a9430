#include <memory>

#include "absl/strings/str_join.h"
#include "nlohmann/json.hpp"
#include "worker/cli/commands.h"
#include "worker/cli/model_flags.h"
#include "worker/eval/generate.h"
#include "worker/model/tokenizer.h"

namespace quantd::cli {
namespace {

absl::Status Generate(const std::vector<std::string>& argv, std::ostream& out, bool* usage) {
  std::set<std::string> known = ModelFlagNames();
  known.insert({"prompt", "max-tokens"});
  *usage = true;
  auto args = Args::Parse(argv, known);
  if (!args.ok()) return args.status();
  auto model_dir = args->Require("model");
  if (!model_dir.ok()) return model_dir.status();
  auto max_tokens = args->GetInt("max-tokens", 32, 0);
  if (!max_tokens.ok()) return max_tokens.status();
  bool json = false;
  if (auto s = OutputFormatFromArgs(*args, &json); !s.ok()) return s;
  if (auto options = LoadOptionsFromArgs(*args); !options.ok()) return options.status();
  *usage = false;

  auto tokenizer = model::LoadTokenizer(*model_dir);
  if (!tokenizer.ok()) return tokenizer.status();
  auto llama = LoadModelFromArgs(*model_dir, *args);
  if (!llama.ok()) return llama.status();

  const std::string prompt = args->Get("prompt");
  auto prompt_ids = (*tokenizer)->Encode(prompt);
  if (!prompt_ids.ok()) return prompt_ids.status();
  std::vector<int64_t> input = {(*tokenizer)->bos_id()};
  input.insert(input.end(), prompt_ids->begin(), prompt_ids->end());

  eval::GenerateOptions generate;
  generate.max_new_tokens = *max_tokens;
  std::vector<int64_t> fed = input;
  if (llama->prefix) {
    // An export's prefix KV cache comes first; a prefix ending in BOS replaces the prompt's.
    generate.prefix = &llama->prefix->kv;
    generate.prefix_last_logits = llama->prefix->last_logits;
    if (!llama->prefix->ids.empty() && llama->prefix->ids.back() == llama->prefix->bos_id) {
      fed.erase(fed.begin());
    }
  }
  auto generated = eval::GreedyGenerate(*llama->model, fed, generate);
  if (!generated.ok()) return generated.status();
  std::vector<int32_t> all(input.begin(), input.end());
  all.insert(all.end(), generated->begin(), generated->end());
  auto text = (*tokenizer)->Decode(all);
  if (!text.ok()) return text.status();

  if (json) {
    nlohmann::json result = {{"model", *model_dir}, {"prompt", prompt},
                             {"prompt_ids", input}, {"generated_ids", *generated},
                             {"text", *text},       {"device", llama->model->device().str()}};
    out << result.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) << "\n";
  } else {
    out << "prompt ids: " << absl::StrJoin(input, " ") << "\n"
        << "generated ids: " << absl::StrJoin(*generated, " ") << "\n"
        << "text: " << *text << "\n";
  }
  return absl::OkStatus();
}

}  // namespace

int RunGenerate(const std::vector<std::string>& args, std::ostream& out, std::ostream& err) {
  return RunCommandBody(
      "generate",
      "--model DIR [--prompt TEXT] [--max-tokens N] [--output text|json] "
      "[--dtype float32|bfloat16|float16] [--device auto|cpu|cuda[:N]] [--streamed_blocks N]",
      Generate, args, out, err);
}

}  // namespace quantd::cli
