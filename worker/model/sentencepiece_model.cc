#include "worker/model/sentencepiece_model.h"

#include <cstring>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "proto/common/status_macros.h"

namespace quantd::model {
namespace {

// Minimal protobuf wire-format cursor.
class Wire {
 public:
  explicit Wire(absl::string_view bytes) : bytes_(bytes) {}
  bool done() const { return pos_ >= bytes_.size(); }

  bool Varint(uint64_t* out) {
    uint64_t value = 0;
    for (int shift = 0; shift < 64; shift += 7) {
      if (pos_ >= bytes_.size()) return false;
      const uint8_t b = static_cast<uint8_t>(bytes_[pos_++]);
      value |= static_cast<uint64_t>(b & 0x7f) << shift;
      if (b < 0x80) {
        *out = value;
        return true;
      }
    }
    return false;
  }

  // Reads one field; `bytes` is set for length-delimited fields, `value` for varints and
  // fixed32/64 (raw bits).
  bool Field(uint32_t* number, uint32_t* wire_type, uint64_t* value, absl::string_view* bytes) {
    uint64_t key = 0;
    if (!Varint(&key)) return false;
    *number = static_cast<uint32_t>(key >> 3);
    *wire_type = static_cast<uint32_t>(key & 7);
    switch (*wire_type) {
      case 0:
        return Varint(value);
      case 1:
        return Fixed(8, value);
      case 5:
        return Fixed(4, value);
      case 2: {
        uint64_t length = 0;
        if (!Varint(&length) || length > bytes_.size() - pos_) return false;
        *bytes = bytes_.substr(pos_, length);
        pos_ += length;
        return true;
      }
      default:
        return false;
    }
  }

 private:
  bool Fixed(size_t n, uint64_t* value) {
    if (bytes_.size() - pos_ < n) return false;
    uint64_t v = 0;
    for (size_t i = 0; i < n; ++i) v |= static_cast<uint64_t>(uint8_t(bytes_[pos_ + i])) << (8 * i);
    pos_ += n;
    *value = v;
    return true;
  }

  absl::string_view bytes_;
  size_t pos_ = 0;
};

absl::Status Malformed(absl::string_view label, absl::string_view where) {
  return absl::InvalidArgumentError(
      absl::StrCat("sentencepiece model ", label, ": malformed ", where));
}

absl::Status ParsePiece(absl::string_view bytes, absl::string_view label,
                        SentencePieceModel::Piece* piece) {
  Wire wire(bytes);
  while (!wire.done()) {
    uint32_t number, type;
    uint64_t value = 0;
    absl::string_view data;
    if (!wire.Field(&number, &type, &value, &data)) return Malformed(label, "piece");
    if (number == 1 && type == 2) {
      piece->text = std::string(data);
    } else if (number == 2 && type == 5) {
      const uint32_t bits = static_cast<uint32_t>(value);
      std::memcpy(&piece->score, &bits, sizeof(float));
    } else if (number == 3 && type == 0) {
      if (value < 1 || value > 6) return Malformed(label, "piece type");
      piece->type = static_cast<SentencePieceModel::PieceType>(value);
    }
  }
  return absl::OkStatus();
}

absl::Status ParseTrainer(absl::string_view bytes, absl::string_view label,
                          SentencePieceModel* model) {
  Wire wire(bytes);
  while (!wire.done()) {
    uint32_t number, type;
    uint64_t value = 0;
    absl::string_view data;
    if (!wire.Field(&number, &type, &value, &data)) return Malformed(label, "trainer_spec");
    if (type != 0) continue;
    const auto as_int = static_cast<int32_t>(static_cast<int64_t>(value));
    switch (number) {
      case 3:
        model->model_type = static_cast<SentencePieceModel::ModelType>(value);
        break;
      case 35:
        model->byte_fallback = value != 0;
        break;
      case 40:
        model->unk_id = as_int;
        break;
      case 41:
        model->bos_id = as_int;
        break;
      case 42:
        model->eos_id = as_int;
        break;
      case 43:
        model->pad_id = as_int;
        break;
      default:
        break;
    }
  }
  return absl::OkStatus();
}

absl::Status ParseNormalizer(absl::string_view bytes, absl::string_view label,
                             SentencePieceModel* model) {
  Wire wire(bytes);
  while (!wire.done()) {
    uint32_t number, type;
    uint64_t value = 0;
    absl::string_view data;
    if (!wire.Field(&number, &type, &value, &data)) return Malformed(label, "normalizer_spec");
    if (number == 1 && type == 2) model->normalizer_name = std::string(data);
    if (number == 2 && type == 2) model->precompiled_charsmap = std::string(data);
    if (number == 3 && type == 0) model->add_dummy_prefix = value != 0;
    if (number == 4 && type == 0) model->remove_extra_whitespaces = value != 0;
    if (number == 5 && type == 0) model->escape_whitespaces = value != 0;
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<SentencePieceModel> ParseSentencePieceModel(absl::string_view bytes,
                                                           absl::string_view label) {
  SentencePieceModel model;
  Wire wire(bytes);
  while (!wire.done()) {
    uint32_t number, type;
    uint64_t value = 0;
    absl::string_view data;
    if (!wire.Field(&number, &type, &value, &data)) return Malformed(label, "model file");
    if (type != 2) continue;
    if (number == 1) {
      SentencePieceModel::Piece piece;
      RETURN_IF_ERROR(ParsePiece(data, label, &piece));
      model.pieces.push_back(std::move(piece));
    } else if (number == 2) {
      RETURN_IF_ERROR(ParseTrainer(data, label, &model));
    } else if (number == 3) {
      RETURN_IF_ERROR(ParseNormalizer(data, label, &model));
    }
  }
  if (model.pieces.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat("sentencepiece model ", label, ": no pieces (not a sentencepiece model?)"));
  }
  const auto size = static_cast<int32_t>(model.pieces.size());
  for (int32_t id : {model.unk_id, model.bos_id, model.eos_id}) {
    if (id >= size) return Malformed(label, "special token id");
  }
  return model;
}

}  // namespace quantd::model
