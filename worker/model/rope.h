// Rotary position embedding in Hugging Face's rotate_half layout (the first half of each head
// pairs with the second half), with the "linear" and "llama3" frequency scalings.
#ifndef QUANTD_WORKER_MODEL_ROPE_H_
#define QUANTD_WORKER_MODEL_ROPE_H_

#include <torch/torch.h>

#include <cstdint>

#include "worker/model/config.h"

namespace quantd::model {

class RotaryEmbedding {
 public:
  explicit RotaryEmbedding(const LlamaConfig& config);

  // cos and sin for positions [start, start + length): each [length, head_dim], computed in
  // float32 and returned as `dtype` on `device`.
  std::pair<torch::Tensor, torch::Tensor> CosSin(int64_t start, int64_t length,
                                                 torch::ScalarType dtype,
                                                 const torch::Device& device) const;

  // The per-pair inverse frequencies after scaling: [head_dim / 2], float32.
  const torch::Tensor& inv_freq() const { return inv_freq_; }

 private:
  torch::Tensor inv_freq_;
};

// x * cos + rotate_half(x) * sin, where x is [..., tokens, head_dim] and cos/sin broadcast
// as [tokens, head_dim].
torch::Tensor ApplyRotary(const torch::Tensor& x, const torch::Tensor& cos,
                          const torch::Tensor& sin);

}  // namespace quantd::model

#endif  // QUANTD_WORKER_MODEL_ROPE_H_
