#include "worker/model/bpe.h"

#include <queue>

namespace quantd::model {
namespace {

struct Candidate {
  double score;
  size_t left;    // index of the left symbol
  size_t length;  // bytes of the merged pair when it was scored (stale check)
  bool operator<(const Candidate& other) const {
    if (score != other.score) return score < other.score;
    return left > other.left;  // leftmost first among equal scores
  }
};

}  // namespace

std::vector<ByteRange> SplitUtf8(absl::string_view text) {
  std::vector<ByteRange> out;
  size_t i = 0;
  while (i < text.size()) {
    const unsigned char c = static_cast<unsigned char>(text[i]);
    size_t len = c < 0x80           ? 1
                 : (c >> 5) == 0x6  ? 2
                 : (c >> 4) == 0xe  ? 3
                 : (c >> 3) == 0x1e ? 4
                                    : 1;
    if (i + len > text.size()) len = 1;
    for (size_t k = 1; k < len; ++k) {
      if ((static_cast<unsigned char>(text[i + k]) & 0xc0) != 0x80) {
        len = 1;
        break;
      }
    }
    out.push_back({i, len});
    i += len;
  }
  return out;
}

std::vector<ByteRange> BpeMerge(absl::string_view text, std::vector<ByteRange> symbols,
                                const PairScoreFn& pair_score) {
  const size_t n = symbols.size();
  if (n < 2) return symbols;
  std::vector<long> prev(n), next(n);
  for (size_t i = 0; i < n; ++i) {
    prev[i] = static_cast<long>(i) - 1;
    next[i] = i + 1 < n ? static_cast<long>(i + 1) : -1;
  }
  std::priority_queue<Candidate> agenda;
  auto consider = [&](long left) {
    if (left < 0 || next[left] < 0) return;
    const ByteRange& a = symbols[left];
    const ByteRange& b = symbols[next[left]];
    double score = 0;
    if (pair_score(text.substr(a.begin, a.length), text.substr(b.begin, b.length), &score)) {
      agenda.push({score, static_cast<size_t>(left), a.length + b.length});
    }
  };
  for (size_t i = 0; i + 1 < n; ++i) consider(static_cast<long>(i));
  while (!agenda.empty()) {
    const Candidate top = agenda.top();
    agenda.pop();
    ByteRange& left = symbols[top.left];
    const long right = next[top.left];
    if (left.length == 0 || right < 0 || left.length + symbols[right].length != top.length) {
      continue;  // stale: one side was merged since
    }
    left.length += symbols[right].length;
    symbols[right].length = 0;
    next[top.left] = next[right];
    if (next[right] >= 0) prev[next[right]] = static_cast<long>(top.left);
    consider(prev[top.left]);
    consider(static_cast<long>(top.left));
  }
  std::vector<ByteRange> out;
  for (long i = 0; i >= 0; i = next[i]) out.push_back(symbols[i]);
  return out;
}

}  // namespace quantd::model
