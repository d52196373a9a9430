#include "worker/train/prefix_loss.h"

#include <algorithm>
#include <cmath>
#include <stdexcept>

namespace quantd::train {

std::map<std::string, double> PrefixLoss::Components() const {
  return {{"outlier", outlier.item<double>()},
          {"smoothness", smoothness.item<double>()},
          {"diversity", diversity.item<double>()},
          {"magnitude", magnitude.item<double>()}};
}

PrefixLoss ComputePrefixLoss(const std::vector<torch::Tensor>& layers, const torch::Tensor& prefix,
                             const PrefixLossOptions& options) {
  if (layers.empty()) throw std::invalid_argument("prefix loss: no target layer");
  const double temperature = options.temperature;
  torch::Tensor outlier, smoothness;
  for (const torch::Tensor& layer : layers) {
    const torch::Tensor h = layer.to(torch::kFloat32);
    const torch::Tensor a = h.abs().reshape({-1});
    const int64_t n = a.numel();
    const int64_t k = std::max<int64_t>(
        1, static_cast<int64_t>(std::ceil(options.top_fraction * static_cast<double>(n))));
    torch::Tensor term = torch::relu(a - options.threshold).mean() +
                         temperature * torch::logsumexp(a / temperature, 0) +
                         std::get<0>(a.topk(std::min(k, n))).mean();
    torch::Tensor smooth =
        h.size(1) > 1
            ? (h.narrow(1, 1, h.size(1) - 1) - h.narrow(1, 0, h.size(1) - 1)).pow(2).mean()
            : torch::zeros({}, h.options());
    outlier = outlier.defined() ? outlier + term : term;
    smoothness = smoothness.defined() ? smoothness + smooth : smooth;
  }
  const double count = static_cast<double>(layers.size());
  PrefixLoss loss;
  loss.outlier = outlier / count;
  loss.smoothness = smoothness / count;
  const torch::Tensor p = prefix.to(torch::kFloat32);
  const int64_t num = p.size(0);
  if (num > 1) {
    const torch::Tensor unit = torch::nn::functional::normalize(
        p, torch::nn::functional::NormalizeFuncOptions().dim(1).eps(1e-12));
    const torch::Tensor cos2 = torch::matmul(unit, unit.t()).pow(2);
    loss.diversity = (cos2.sum() - cos2.diagonal().sum()) / static_cast<double>(num * (num - 1));
  } else {
    loss.diversity = torch::zeros({}, p.options());
  }
  loss.magnitude = p.pow(2).mean();
  loss.total = options.outlier_weight * loss.outlier + options.smoothness_weight * loss.smoothness +
               options.diversity_weight * loss.diversity +
               options.magnitude_weight * loss.magnitude;
  return loss;
}

}  // namespace quantd::train
