// The replaceable parts of the Llama runtime and the activation observer interface.
//
// A LlamaBlock holds each projection as a std::shared_ptr<LinearLayer> and its K/V path as an
// optional AttentionTransform, so quantization code can swap a DenseLinear for a quantized
// layer, or install a transform that rotates/quantizes Q, K and V, without touching the
// forward pass. None of these are thread-safe to mutate while a forward pass runs.
#ifndef QUANTD_WORKER_MODEL_MODULES_H_
#define QUANTD_WORKER_MODEL_MODULES_H_

#include <torch/torch.h>

#include <cstdint>
#include <memory>
#include <vector>

namespace quantd::model {

// y = x W^T (+ b) over the last dimension of x.
class LinearLayer {
 public:
  virtual ~LinearLayer() = default;
  virtual torch::Tensor Forward(const torch::Tensor& x) = 0;
  virtual int64_t in_features() const = 0;
  virtual int64_t out_features() const = 0;
  // Every tensor member the layer holds (weights, scales, caches; undefined ones included), so
  // block streaming (block_streaming.h) can move the layer between host and device memory. A
  // layer must list all of them: one left out stays where it is and meets inputs on another
  // device.
  virtual std::vector<torch::Tensor*> StateTensors() = 0;
};

// The full-precision layer loaded from the checkpoint. weight: [out, in]; bias: [out] or
// undefined. The tensors are public so that rotation code can fold transforms into them.
class DenseLinear : public LinearLayer {
 public:
  explicit DenseLinear(torch::Tensor weight, torch::Tensor bias = {})
      : weight(std::move(weight)), bias(std::move(bias)) {}
  torch::Tensor Forward(const torch::Tensor& x) override;
  int64_t in_features() const override { return weight.size(1); }
  int64_t out_features() const override { return weight.size(0); }
  std::vector<torch::Tensor*> StateTensors() override { return {&weight, &bias}; }

  torch::Tensor weight;
  torch::Tensor bias;
};

// The K/V path of one attention layer: called with the new tokens' query, key and value
// ([batch, heads, tokens, head_dim]; q and k after RoPE, before the cached prefix is joined).
// It may replace any of them (online Hadamard on q/k, KV fake quantization). What it leaves
// in *k and *v is what a returned KV cache holds.
class AttentionTransform {
 public:
  virtual ~AttentionTransform() = default;
  virtual void Apply(int layer, torch::Tensor* q, torch::Tensor* k, torch::Tensor* v) = 0;
  // Every tensor member it holds (as LinearLayer::StateTensors).
  virtual std::vector<torch::Tensor*> StateTensors() = 0;
};

// Where in a block an activation is taken.
enum class ActivationSite {
  kQkvInput,       // normed input of q/k/v_proj   [batch, tokens, hidden]
  kOProjInput,     // attention output, input of o_proj [batch, tokens, heads*head_dim]
  kUpGateInput,    // normed input of up/gate_proj [batch, tokens, hidden]
  kDownProjInput,  // silu(gate)*up, input of down_proj [batch, tokens, intermediate]
  kBlockOutput,    // residual stream after the block  [batch, tokens, hidden]
};

// Receives activations during a forward pass. Observe() gets the live tensor (no copy; it is
// part of the autograd graph when grad is enabled); it must not modify it in place and should
// clone/detach what it keeps. Wants() is asked first, so unobserved sites cost nothing.
// Tokens of a prefix KV cache are not part of these tensors; prefix *embeddings* passed as
// input are (the caller knows how many there are).
class ActivationObserver {
 public:
  virtual ~ActivationObserver() = default;
  virtual bool Wants(int layer, ActivationSite site) const = 0;
  virtual void Observe(int layer, ActivationSite site, const torch::Tensor& x) = 0;
};

// Keys and values of one layer: [batch or 1, kv_heads, length, head_dim]. A batch size of 1
// is shared by every sequence of a larger batch (a prefix KV cache).
struct LayerKv {
  torch::Tensor k;
  torch::Tensor v;
};

struct KvCache {
  std::vector<LayerKv> layers;  // one per decoder layer, or empty for "no cache"
  int64_t length() const { return layers.empty() ? 0 : layers[0].k.size(2); }
  bool empty() const { return layers.empty(); }
};

}  // namespace quantd::model

#endif  // QUANTD_WORKER_MODEL_MODULES_H_
