// Test helpers for the training phases: a fresh stories260K model per call (training replaces
// its blocks), TinyStories windows that never start with BOS, and a loss-point recorder.
#ifndef QUANTD_TESTS_TRAIN_TRAIN_FIXTURE_H_
#define QUANTD_TESTS_TRAIN_TRAIN_FIXTURE_H_

#include <memory>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "tests/common/stories_model.h"
#include "worker/model/llama.h"
#include "worker/train/training.h"

namespace quantd::train::testing {

using test_data::LoadModel;
using test_data::SharedData;
using test_data::StoriesDir;
using test_data::StoryTokens;

// `count` windows of `len` tokens from `tokens`, consecutive from token `offset`, each moved
// on by one token when it would start with BOS (id 1).
inline std::vector<std::vector<int32_t>> Windows(const std::vector<int32_t>& tokens, int64_t count,
                                                 int64_t len, int64_t offset) {
  std::vector<std::vector<int32_t>> out;
  int64_t at = offset;
  for (int64_t i = 0; i < count; ++i) {
    if (tokens[at] == 1) ++at;
    out.emplace_back(tokens.begin() + at, tokens.begin() + at + len);
    at += len;
  }
  return out;
}

struct Recorder {
  std::vector<LossPoint> points;
  std::vector<std::string> logs;
  TrainCallbacks Callbacks() {
    TrainCallbacks c;
    c.on_loss = [this](const LossPoint& p) { points.push_back(p); };
    c.on_log = [this](const std::string& line) { logs.push_back(line); };
    return c;
  }
  std::vector<LossPoint> Split(const std::string& split) const {
    std::vector<LossPoint> out;
    for (const auto& p : points) {
      if (p.split == split) out.push_back(p);
    }
    return out;
  }
};

}  // namespace quantd::train::testing

#endif  // QUANTD_TESTS_TRAIN_TRAIN_FIXTURE_H_
