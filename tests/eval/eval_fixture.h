// Test helper: the shared stories260K model and its tokenizer, loaded once per test binary.
#ifndef QUANTD_TESTS_EVAL_EVAL_FIXTURE_H_
#define QUANTD_TESTS_EVAL_EVAL_FIXTURE_H_

#include <memory>
#include <string>

#include "gtest/gtest.h"
#include "worker/model/llama.h"
#include "worker/model/tokenizer.h"

namespace quantd::eval::testing {

inline std::string SharedData(const std::string& relative) {
  return std::string(QUANTD_SHARED_DATA) + "/" + relative;
}

class Stories260KTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    auto model = model::LlamaModel::Load(SharedData("models/stories260K"));
    ASSERT_TRUE(model.ok()) << model.status();
    model_ = std::move(model).value().release();
    auto tokenizer = model::LoadTokenizer(SharedData("models/stories260K"));
    ASSERT_TRUE(tokenizer.ok()) << tokenizer.status();
    tokenizer_ = std::move(tokenizer).value().release();
  }
  static void TearDownTestSuite() {
    delete model_;
    delete tokenizer_;
    model_ = nullptr;
    tokenizer_ = nullptr;
  }
  static inline model::LlamaModel* model_ = nullptr;
  static inline model::Tokenizer* tokenizer_ = nullptr;
};

}  // namespace quantd::eval::testing

#endif  // QUANTD_TESTS_EVAL_EVAL_FIXTURE_H_
