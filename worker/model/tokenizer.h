// One interface for the tokenizers of Llama-family checkpoints: sentencepiece
// `tokenizer.model` and Hugging Face `tokenizer.json` (BPE, byte-level or with byte fallback).
//
// Encode() never adds BOS/EOS: callers add bos_id() explicitly where the protocol wants it
// (see eval/token_stream.h), which keeps a prefix from getting a second BOS. Implementations
// are immutable after loading and thread-safe.
#ifndef QUANTD_WORKER_MODEL_TOKENIZER_H_
#define QUANTD_WORKER_MODEL_TOKENIZER_H_

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace quantd::model {

class Tokenizer {
 public:
  virtual ~Tokenizer() = default;
  // Token ids of `text` without special tokens.
  virtual absl::StatusOr<std::vector<int32_t>> Encode(absl::string_view text) const = 0;
  // Text of `ids`; INVALID_ARGUMENT for an id outside the vocabulary.
  virtual absl::StatusOr<std::string> Decode(const std::vector<int32_t>& ids) const = 0;
  virtual int32_t vocab_size() const = 0;
  virtual int32_t bos_id() const = 0;  // -1 when the vocabulary has none
  virtual int32_t eos_id() const = 0;  // -1 when the vocabulary has none
};

// sentencepiece model file. NOT_FOUND / INVALID_ARGUMENT naming the file.
absl::StatusOr<std::unique_ptr<Tokenizer>> LoadSentencePieceTokenizer(const std::string& path);

// Hugging Face tokenizer.json with a BPE model (see hf_tokenizer.h for what is supported).
absl::StatusOr<std::unique_ptr<Tokenizer>> LoadHfTokenizer(const std::string& path);

// The tokenizer of a model directory: tokenizer.model when present, else tokenizer.json.
absl::StatusOr<std::unique_ptr<Tokenizer>> LoadTokenizer(const std::string& model_dir);

}  // namespace quantd::model

#endif  // QUANTD_WORKER_MODEL_TOKENIZER_H_
