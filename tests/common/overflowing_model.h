// stories260K with one weight scaled so that its sums overflow: every weight is finite (the load
// accepts it), its activations are infinite, its perplexities NaN. For the tests of what a job
// and the commands do with a model that computes NaN.
#ifndef QUANTD_TESTS_COMMON_OVERFLOWING_MODEL_H_
#define QUANTD_TESTS_COMMON_OVERFLOWING_MODEL_H_

#include <filesystem>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "tests/model/safetensors_writer.h"
#include "worker/model/checkpoint.h"

namespace quantd::test_data {

// Writes the model (config, tokenizer, fp32 safetensors) to `dir`, replacing what is there.
inline void WriteOverflowingModel(const std::string& dir) {
  const std::string source = std::string(QUANTD_SHARED_DATA) + "/models/stories260K";
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  for (const char* file : {"config.json", "tokenizer.model"}) {
    std::filesystem::copy_file(source + "/" + file, dir + "/" + file);
  }
  auto checkpoint = model::Checkpoint::Open(source);
  ASSERT_TRUE(checkpoint.ok());
  std::vector<model::testing::RawTensor> tensors;
  for (const auto& name : (*checkpoint)->TensorNames()) {
    auto t = (*checkpoint)->Load(name, torch::kFloat32);
    ASSERT_TRUE(t.ok());
    torch::Tensor w = t->contiguous();
    if (name == "model.layers.0.mlp.down_proj.weight") {
      w = w / w.abs().max() * 3e38;  // finite, but its sums overflow
    }
    tensors.push_back({name, "F32", w.sizes().vec(),
                       std::string(static_cast<const char*>(w.data_ptr()), w.nbytes())});
  }
  model::testing::WriteFile(dir + "/model.safetensors", model::testing::BuildSafetensors(tensors));
}

}  // namespace quantd::test_data

#endif  // QUANTD_TESTS_COMMON_OVERFLOWING_MODEL_H_
