// Test helpers: the shared stories260K model (a fresh copy per call, since tests rotate and
// quantize it in place), its tokenizer and TinyStories token windows.
#ifndef QUANTD_TESTS_QUANT_QUANT_FIXTURE_H_
#define QUANTD_TESTS_QUANT_QUANT_FIXTURE_H_

#include <memory>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "tests/common/stories_model.h"
#include "worker/model/llama.h"

namespace quantd::quant::testing {

using test_data::LoadModel;
using test_data::SharedData;
using test_data::StoriesDir;
using test_data::StoryTokens;

inline torch::Tensor Ids(const std::vector<int32_t>& ids) {
  return torch::tensor(std::vector<int64_t>(ids.begin(), ids.end()), torch::kInt64).unsqueeze(0);
}

inline torch::Tensor Logits(model::LlamaModel& model, const std::vector<int32_t>& ids,
                            const model::KvCache* past = nullptr) {
  torch::NoGradGuard no_grad;
  model::ForwardRequest request;
  request.input_ids = Ids(ids);
  request.past = past;
  auto result = model.Forward(request);
  EXPECT_TRUE(result.ok()) << result.status();
  return result.ok() ? result->logits[0] : torch::Tensor();
}

}  // namespace quantd::quant::testing

#endif  // QUANTD_TESTS_QUANT_QUANT_FIXTURE_H_
