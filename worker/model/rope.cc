#include "worker/model/rope.h"

#include <cmath>
#include <vector>

namespace quantd::model {

RotaryEmbedding::RotaryEmbedding(const LlamaConfig& config) {
  const int64_t dim = config.head_dim;
  std::vector<float> freqs(dim / 2);
  const RopeScaling& scaling = config.rope_scaling;
  for (int64_t i = 0; i < dim / 2; ++i) {
    // Same float32 arithmetic as the reference: theta ** (2i / dim) in float32.
    const float exponent = static_cast<float>(2 * i) / static_cast<float>(dim);
    double f = 1.0 / std::pow(static_cast<float>(config.rope_theta), exponent);
    f = static_cast<float>(f);
    if (scaling.type == RopeScaling::Type::kLinear) {
      f /= scaling.factor;
    } else if (scaling.type == RopeScaling::Type::kLlama3) {
      const double old_ctx = static_cast<double>(scaling.original_max_position_embeddings);
      const double low_wavelen = old_ctx / scaling.low_freq_factor;
      const double high_wavelen = old_ctx / scaling.high_freq_factor;
      const double wavelen = 2.0 * M_PI / f;
      if (wavelen > low_wavelen) {
        f /= scaling.factor;
      } else if (wavelen >= high_wavelen) {
        const double smooth = (old_ctx / wavelen - scaling.low_freq_factor) /
                              (scaling.high_freq_factor - scaling.low_freq_factor);
        f = (1.0 - smooth) * f / scaling.factor + smooth * f;
      }
    }
    freqs[i] = static_cast<float>(f);
  }
  inv_freq_ = torch::tensor(freqs, torch::kFloat32);
}

std::pair<torch::Tensor, torch::Tensor> RotaryEmbedding::CosSin(int64_t start, int64_t length,
                                                                torch::ScalarType dtype,
                                                                const torch::Device& device) const {
  auto positions = torch::arange(start, start + length, torch::kFloat32).to(device);
  auto angles = torch::outer(positions, inv_freq_.to(device));
  auto emb = torch::cat({angles, angles}, -1);
  return {emb.cos().to(dtype), emb.sin().to(dtype)};
}

torch::Tensor ApplyRotary(const torch::Tensor& x, const torch::Tensor& cos,
                          const torch::Tensor& sin) {
  const int64_t half = x.size(-1) / 2;
  auto x1 = x.narrow(-1, 0, half);
  auto x2 = x.narrow(-1, half, half);
  auto rotated = torch::cat({-x2, x1}, -1);
  return x * cos + rotated * sin;
}

}  // namespace quantd::model
