// The exported quantized model: a folder a finished QuantizeJob leaves in its output_dir, which
// `quantd-worker perplexity|generate|inspect --model DIR` loads again (DESIGN.md §3 step 10).
//
// Files (all written into "<dir>.tmp-<pid>" and renamed to <dir> when complete, so a folder
// named <dir> is always finished; manifest.json is written last):
//   config.json            the input model's config.json
//   tokenizer.model / tokenizer.json / tokenizer_config.json / special_tokens_map.json /
//   generation_config.json  copied from the input model where present
//   model.safetensors      (or model-0000i-of-0000n.safetensors + model.safetensors.index.json
//                          when larger than the shard limit)
//   prefix.safetensors     when the model runs after a prefixed KV cache
//   quant_config.json      every setting a loader needs (below)
//   manifest.json          format version, job spec, seeds, calibration windows, input model
//                          files with SHA-256, library versions, timings, metrics, and the size
//                          and SHA-256 of every other file of the folder
//
// model.safetensors tensors (float tensors in quant_config "dtype", the job's compute dtype):
//   model.embed_tokens.weight, model.norm.weight, lm_head.weight (absent when tied),
//   model.layers.<i>.input_layernorm.weight, model.layers.<i>.post_attention_layernorm.weight
//   (rotated: RMSNorm weights folded into the next linears, so these are ones), and for each
//   projection P of a layer (self_attn.{q,k,v,o}_proj, mlp.{gate,up,down}_proj):
//     P.qweight      U8 [out, ceil(in·bits/8)]  the integer weights, packed per row (bit order
//                                               of worker/export/bit_pack.h: little-endian bit
//                                               stream, two's complement; for 4 bits value 2i
//                                               in the low nibble of byte i, 2i+1 in the high)
//     P.scales       F32 [out, in/group_size] (one column per channel when group_size is -1);
//                    weight = (qweight · scales, in fp32) cast to dtype
//     P.weight       instead of the two above when weight bits = 16
//     P.input_scale  F32 []  the static activation scale (static activation quantization only)
//   model.layers.<i>.self_attn.k_cache_scale / v_cache_scale  F32 [1, kv_heads, 1, head_dim /
//     kv_group_size]  static KV scales (static KV quantization only; keys after RoPE and R3)
//   hadamard.down_proj.base, hadamard.qk.base  I8 [k, k] (±1; F32 for the random-orthogonal
//     fallback, "is_hadamard": false)  the base matrix B of the online
//     Hadamard (R4 on down_proj inputs, R3 on queries and keys), M = B ⊗ H_{2^m}, orthonormal
//     scaling 1/sqrt(n) (kernels/hadamard.h); present when that transform is on.
// prefix.safetensors tensors:
//   prefix.token_ids I32 [P], prefix.last_logits F32 [vocab] (prediction after the prefix),
//   prefix.embeddings [P, hidden] (trained continuous prefix only),
//   prefix.layers.<i>.key / .value  [1, kv_heads, P, head_dim]  the full-precision prefix KV
//     cache in dtype (keys after RoPE and R3).
//
// quant_config.json (format "quantd-prefixquant", format_version 1):
//   {"format", "format_version", "dtype": "float32|bfloat16|float16",
//    "tie_word_embeddings": bool,
//    "weight": {"bits", "group_size", "mse_init", "packing": "signed-bits-le-rowwise"},
//    "activation": {"bits", "mode": "static|dynamic", "clip_ratio"},
//    "kv_cache": {"k_bits", "v_bits", "group_size", "mode"},
//    "rotation": {"applied", "mode": "hadamard|random", "seed",
//                 "down_proj_online_hadamard": null | {"n", "base_order", "log2_pow2",
//                                                       "is_hadamard", "construction"},
//                 "qk_online_hadamard": same},
//    "prefix": null | {"token_ids": [...], "bos_id", "length", "trained_embeddings": bool},
//    "files": {"model": "model.safetensors" | "model.safetensors.index.json",
//              "prefix": "prefix.safetensors" | null}}
#ifndef QUANTD_WORKER_EXPORT_ARTIFACT_FORMAT_H_
#define QUANTD_WORKER_EXPORT_ARTIFACT_FORMAT_H_

#include <string>

namespace quantd::exporter {

inline constexpr char kQuantConfigFile[] = "quant_config.json";
inline constexpr char kManifestFile[] = "manifest.json";
inline constexpr char kPrefixFile[] = "prefix.safetensors";
inline constexpr char kFormatName[] = "quantd-prefixquant";
inline constexpr int kFormatVersion = 1;
inline constexpr char kPacking[] = "signed-bits-le-rowwise";

// The projections of a block, in the order they are written.
inline constexpr const char* kProjections[] = {
    "self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj",
    "mlp.gate_proj",    "mlp.up_proj",      "mlp.down_proj"};

// True when `dir` holds a quant_config.json or a manifest.json: it is meant as an export (to be
// read by LoadArtifact, whose errors then say what is wrong with it) rather than a Hugging Face
// model.
bool IsArtifactDir(const std::string& dir);

// True only for a folder an export of this format wrote: its manifest.json has format
// "quantd-prefixquant" and a files list, and every entry of the folder is manifest.json or a
// plain file that list names. Only such a folder may be replaced by a new export, so whatever
// else a user keeps in an output_dir (another tool's model with its own quant_config.json, a
// file added to an export) is never deleted.
bool IsReplaceableArtifactDir(const std::string& dir);

}  // namespace quantd::exporter

#endif  // QUANTD_WORKER_EXPORT_ARTIFACT_FORMAT_H_
