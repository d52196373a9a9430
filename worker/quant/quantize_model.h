// Swaps fake quantizers into a (rotated or plain) LlamaModel and calibrates static scales
// (DESIGN.md §3.7). lm_head and the embeddings stay in full precision.
//
// QuantizeModel replaces every block projection by a QuantLinear with a fake-quantized weight
// and an input quantizer (an existing QuantLinear, e.g. rotation's down_proj, keeps its online
// Hadamard), and gives every block a KvTransform (keeping rotation's R3) with K/V quantizers.
// Static quantizers must then be calibrated with CalibrateStatic before the model is used.
// Not thread-safe; the model must not run concurrently.
#ifndef QUANTD_WORKER_QUANT_QUANTIZE_MODEL_H_
#define QUANTD_WORKER_QUANT_QUANTIZE_MODEL_H_

#include <cstdint>
#include <functional>
#include <vector>

#include "absl/status/status.h"
#include "worker/model/llama.h"
#include "worker/quant/quantizers.h"

namespace quantd::quant {

struct QuantSettings {
  WeightQuantSettings weight;
  int input_bits = 16;
  bool input_dynamic = true;
  float activation_clip = 1.0f;  // dynamic activation clipping ratio
  int k_bits = 16;
  int v_bits = 16;
  int64_t kv_group_size = 128;  // clamped to head_dim
  bool kv_dynamic = true;
};

// Errors: INVALID_ARGUMENT for a group size that does not divide a layer; FAILED_PRECONDITION
// for a linear that is neither DenseLinear nor QuantLinear or has a bias; INTERNAL otherwise.
absl::Status QuantizeModel(model::LlamaModel& model, const QuantSettings& settings);

// True when some installed quantizer is static and not yet calibrated.
bool NeedsCalibration(const model::LlamaModel& model);

// Runs `windows` (equal lengths, batches of `batch_size`) after the optional `prefix` KV cache
// with every static quantizer observing its inputs (nothing is quantized meanwhile except the
// weights), then sets their scales. The prefix tokens are never observed: only the windows'
// tokens pass through the quantizers. `progress(done, total)` is called after each batch and
// may return false to stop (CANCELLED).
absl::Status CalibrateStatic(model::LlamaModel& model,
                             const std::vector<std::vector<int32_t>>& windows,
                             const model::KvCache* prefix, int64_t batch_size,
                             const std::function<bool(int64_t, int64_t)>& progress = {});

}  // namespace quantd::quant

#endif  // QUANTD_WORKER_QUANT_QUANTIZE_MODEL_H_
