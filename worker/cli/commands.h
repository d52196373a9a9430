// The quantd-worker sub-commands that run a model directly (no scheduler):
//
//   generate   --model DIR [--prompt TEXT] [--max-tokens N] [--output text|json]
//              greedy decoding from BOS + prompt; prints the ids and the text.
//   perplexity --model DIR --text FILE [--seqlen N] [--max-windows K]
//              [--documents whole|blank-line] [--batch-size B] [--output text|json]
//              the standard windowed perplexity (see worker/eval/perplexity.h).
//   zero-shot  --model DIR --tasks NAME=FILE[,...] [--limit N] [--batch-size B]
//              [--output text|json]
//              multiple-choice accuracy on task files (see worker/eval/task_file.h).
//   inspect    EXPORT_DIR [--output text|json]
//              checks an export (worker/export) and summarises it: bits, groups, prefix,
//              metrics, file sizes, compression ratio vs the input model.
// generate, perplexity and zero-shot also take --dtype float32|bfloat16|float16 and
// --device auto|cpu|cuda[:N] (auto, the default: the first visible GPU, else the CPU);
// their --model may be an export folder, run with its rotation, quantizers and prefix KV cache.
//
// Each returns the process exit code: 0 success, 1 failure (model, data), 2 usage error;
// results go to `out`, errors to `err`.
#ifndef QUANTD_WORKER_CLI_COMMANDS_H_
#define QUANTD_WORKER_CLI_COMMANDS_H_

#include <ostream>
#include <string>
#include <vector>

namespace quantd::cli {

int RunGenerate(const std::vector<std::string>& args, std::ostream& out, std::ostream& err);
int RunPerplexity(const std::vector<std::string>& args, std::ostream& out, std::ostream& err);
int RunZeroShot(const std::vector<std::string>& args, std::ostream& out, std::ostream& err);
int RunInspect(const std::vector<std::string>& args, std::ostream& out, std::ostream& err);

}  // namespace quantd::cli

#endif  // QUANTD_WORKER_CLI_COMMANDS_H_
