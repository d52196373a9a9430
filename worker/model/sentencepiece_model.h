// Reader for sentencepiece `.model` files (a serialized ModelProto), decoding just the fields
// a BPE tokenizer needs, straight from the protobuf wire format.
//
// libsentencepiece itself cannot be used in processes that also load LibTorch: it exports its
// own copy of protobuf 3.14, which clashes with the system libprotobuf LibTorch loads (the
// process aborts at start-up). tests/model checks this reader and the tokenizer built on it
// against libsentencepiece in a test binary without LibTorch.
#ifndef QUANTD_WORKER_MODEL_SENTENCEPIECE_MODEL_H_
#define QUANTD_WORKER_MODEL_SENTENCEPIECE_MODEL_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace quantd::model {

struct SentencePieceModel {
  enum class PieceType {
    kNormal = 1,
    kUnknown = 2,
    kControl = 3,
    kUserDefined = 4,
    kUnused = 5,
    kByte = 6
  };
  enum class ModelType { kUnigram = 1, kBpe = 2, kWord = 3, kChar = 4 };
  struct Piece {
    std::string text;
    float score = 0.0f;
    PieceType type = PieceType::kNormal;
  };
  std::vector<Piece> pieces;
  // trainer_spec
  ModelType model_type = ModelType::kUnigram;
  bool byte_fallback = false;
  int32_t unk_id = 0;
  int32_t bos_id = 1;
  int32_t eos_id = 2;
  int32_t pad_id = -1;
  // normalizer_spec
  std::string normalizer_name;
  std::string precompiled_charsmap;
  bool add_dummy_prefix = true;
  bool remove_extra_whitespaces = true;
  bool escape_whitespaces = true;
};

// INVALID_ARGUMENT naming `label` for malformed bytes.
absl::StatusOr<SentencePieceModel> ParseSentencePieceModel(absl::string_view bytes,
                                                           absl::string_view label);

}  // namespace quantd::model

#endif  // QUANTD_WORKER_MODEL_SENTENCEPIECE_MODEL_H_
