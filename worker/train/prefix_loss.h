// The trainable prefix's loss (DESIGN.md §3.5). For each target layer l, h = h_l restricted to
// the non-prefix positions ([batch, tokens, hidden]) and a = |h|:
//   outlier_l    = mean(relu(a − τ))
//                + T · logsumexp(a / T)        (smooth max over all of the layer's elements,
//                                               temperature T = `temperature`, default 1.0)
//                + mean of the k largest a,    k = max(1, ceil(top_fraction · numel(a))),
//                                              top_fraction 0.01 (the top 1 %)
//   smoothness_l = mean over consecutive positions t, t+1 of (h[t+1] − h[t])²
// outlier and smoothness are averaged over the target layers. With p the prefix [P, hidden]:
//   diversity = mean over i ≠ j of cos(p_i, p_j)²   (0 when P = 1)
//   magnitude = mean(p²)
//   total = 1.0·outlier + 0.1·smoothness + 0.05·diversity + 0.01·magnitude (weights settable).
// All terms are computed in fp32. Throws on LibTorch errors (call sites inside training).
#ifndef QUANTD_WORKER_TRAIN_PREFIX_LOSS_H_
#define QUANTD_WORKER_TRAIN_PREFIX_LOSS_H_

#include <torch/torch.h>

#include <map>
#include <string>
#include <vector>

namespace quantd::train {

struct PrefixLossOptions {
  double threshold = 64.0;     // τ (outlier_threshold)
  double temperature = 1.0;    // T of the smooth max
  double top_fraction = 0.01;  // share of elements averaged by the top-k term
  double outlier_weight = 1.0;
  double smoothness_weight = 0.1;
  double diversity_weight = 0.05;
  double magnitude_weight = 0.01;
};

struct PrefixLoss {
  torch::Tensor total;                                      // scalar, in the autograd graph
  torch::Tensor outlier, smoothness, diversity, magnitude;  // scalars (unweighted)
  // Detached values by name: "outlier", "smoothness", "diversity", "magnitude".
  std::map<std::string, double> Components() const;
};

// `layers`: each target layer's non-prefix residual output [batch, tokens, hidden] (non-empty);
// `prefix`: [P, hidden].
PrefixLoss ComputePrefixLoss(const std::vector<torch::Tensor>& layers, const torch::Tensor& prefix,
                             const PrefixLossOptions& options);

}  // namespace quantd::train

#endif  // QUANTD_WORKER_TRAIN_PREFIX_LOSS_H_
