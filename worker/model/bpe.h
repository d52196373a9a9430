// The merge loop shared by the BPE tokenizers (sentencepiece BPE, tokenizer.json BPE).
//
// Starting from `symbols` (adjacent byte ranges that tile `text`), repeatedly merges the
// adjacent pair with the highest score (ties: the leftmost pair) until no pair has a score.
// `pair_score(left, right, &score)` returns false when the pair may not merge. Thread-safe
// (pure function).
#ifndef QUANTD_WORKER_MODEL_BPE_H_
#define QUANTD_WORKER_MODEL_BPE_H_

#include <cstddef>
#include <functional>
#include <vector>

#include "absl/strings/string_view.h"

namespace quantd::model {

struct ByteRange {
  size_t begin = 0;
  size_t length = 0;
};

using PairScoreFn =
    std::function<bool(absl::string_view left, absl::string_view right, double* score)>;

std::vector<ByteRange> BpeMerge(absl::string_view text, std::vector<ByteRange> symbols,
                                const PairScoreFn& pair_score);

// Splits UTF-8 `text` into code points (a malformed byte becomes its own range).
std::vector<ByteRange> SplitUtf8(absl::string_view text);

}  // namespace quantd::model

#endif  // QUANTD_WORKER_MODEL_BPE_H_
