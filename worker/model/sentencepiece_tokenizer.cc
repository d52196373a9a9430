#include <sys/stat.h>

#include <algorithm>
#include <cstdio>
#include <fstream>
#include <iterator>
#include <sstream>
#include <unordered_map>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "proto/common/status_macros.h"
#include "worker/model/bpe.h"
#include "worker/model/sentencepiece_model.h"
#include "worker/model/tokenizer.h"

namespace quantd::model {
namespace {

constexpr absl::string_view kSpaceMark = "\xE2\x96\x81";  // U+2581, sentencepiece's space

using PieceType = SentencePieceModel::PieceType;

// Sentencepiece BPE: identity normalization (optionally collapsing spaces), dummy prefix,
// spaces escaped as U+2581, merges by piece score, byte fallback for unknown characters.
class SentencePieceBpeTokenizer : public Tokenizer {
 public:
  explicit SentencePieceBpeTokenizer(SentencePieceModel model) : model_(std::move(model)) {
    std::fill(std::begin(byte_ids_), std::end(byte_ids_), -1);
    for (size_t i = 0; i < model_.pieces.size(); ++i) {
      const auto& piece = model_.pieces[i];
      const auto id = static_cast<int32_t>(i);
      if (piece.type == PieceType::kNormal || piece.type == PieceType::kUserDefined ||
          piece.type == PieceType::kUnused) {
        mergeable_.emplace(piece.text, id);
      }
      if (piece.type == PieceType::kUserDefined) {
        user_defined_.emplace(piece.text, id);
        max_user_defined_ = std::max(max_user_defined_, piece.text.size());
      }
      unsigned byte = 0;
      if (piece.type == PieceType::kByte && piece.text.size() == 6 &&
          std::sscanf(piece.text.c_str(), "<0x%02X>", &byte) == 1) {
        byte_ids_[byte] = id;
      }
    }
  }

  absl::Status Check(absl::string_view label) const {
    if (model_.model_type != SentencePieceModel::ModelType::kBpe) {
      return absl::UnimplementedError(absl::StrCat("sentencepiece model ", label,
                                                   ": only BPE models are supported (model_type ",
                                                   static_cast<int>(model_.model_type), ")"));
    }
    if (!model_.precompiled_charsmap.empty()) {
      return absl::UnimplementedError(
          absl::StrCat("sentencepiece model ", label, ": normalization rule \"",
                       model_.normalizer_name, "\" is not supported (identity only)"));
    }
    if (model_.byte_fallback) {
      for (int b = 0; b < 256; ++b) {
        if (byte_ids_[b] < 0) {
          return absl::InvalidArgumentError(absl::StrCat(
              "sentencepiece model ", label, ": byte_fallback is set but a byte piece is missing"));
        }
      }
    }
    return absl::OkStatus();
  }

  absl::StatusOr<std::vector<int32_t>> Encode(absl::string_view text) const override {
    const std::string normalized = Normalize(text);
    std::vector<int32_t> ids;
    if (normalized.empty()) return ids;
    auto merged = BpeMerge(normalized, InitialSymbols(normalized),
                           [this](absl::string_view a, absl::string_view b, double* score) {
                             joined_.assign(a.data(), a.size());
                             joined_.append(b.data(), b.size());
                             auto it = mergeable_.find(joined_);
                             if (it == mergeable_.end()) return false;
                             *score = model_.pieces[it->second].score;
                             return true;
                           });
    for (const auto& symbol : merged) {
      const std::string piece = normalized.substr(symbol.begin, symbol.length);
      auto it = mergeable_.find(piece);
      if (it != mergeable_.end()) {
        ids.push_back(it->second);
      } else if (model_.byte_fallback) {
        for (unsigned char c : piece) ids.push_back(byte_ids_[c]);
      } else if (ids.empty() || ids.back() != model_.unk_id) {
        ids.push_back(model_.unk_id);  // runs of unknown characters become one <unk>
      }
    }
    return ids;
  }

  absl::StatusOr<std::string> Decode(const std::vector<int32_t>& ids) const override {
    std::string out;
    bool first = true;
    for (int32_t id : ids) {
      if (id < 0 || id >= vocab_size()) {
        return absl::InvalidArgumentError(
            absl::StrCat("token id ", id, " outside the vocabulary [0, ", vocab_size(), ")"));
      }
      const auto& piece = model_.pieces[id];
      std::string surface;
      switch (piece.type) {
        case PieceType::kControl:
          continue;
        case PieceType::kUnknown:
          surface = " \xE2\x81\x87 ";
          break;
        case PieceType::kByte: {
          unsigned byte = 0;
          std::sscanf(piece.text.c_str(), "<0x%02X>", &byte);
          surface = std::string(1, static_cast<char>(byte));
          break;
        }
        default:
          surface = piece.text;
      }
      std::string decoded;
      for (size_t i = 0; i < surface.size();) {
        if (surface.compare(i, kSpaceMark.size(), kSpaceMark.data(), kSpaceMark.size()) == 0) {
          decoded += ' ';
          i += kSpaceMark.size();
        } else {
          decoded += surface[i++];
        }
      }
      if (first && model_.add_dummy_prefix && !decoded.empty() && decoded[0] == ' ' &&
          piece.type != PieceType::kByte) {
        decoded.erase(0, 1);
      }
      first = false;
      out += decoded;
    }
    return out;
  }

  int32_t vocab_size() const override { return static_cast<int32_t>(model_.pieces.size()); }
  int32_t bos_id() const override { return model_.bos_id; }
  int32_t eos_id() const override { return model_.eos_id; }

 private:
  std::string Normalize(absl::string_view text) const {
    std::string spaced;
    if (model_.remove_extra_whitespaces) {
      bool pending_space = false;
      for (char c : text) {
        if (c == ' ') {
          pending_space = !spaced.empty();
          continue;
        }
        if (pending_space) spaced += ' ';
        pending_space = false;
        spaced += c;
      }
    } else {
      spaced = std::string(text);
    }
    if (spaced.empty()) return spaced;
    std::string out;
    out.reserve(spaced.size() + 8);
    if (model_.add_dummy_prefix) {
      const absl::string_view mark = model_.escape_whitespaces ? kSpaceMark : " ";
      out.append(mark.data(), mark.size());
    }
    for (char c : spaced) {
      if (c == ' ' && model_.escape_whitespaces) {
        out.append(kSpaceMark.data(), kSpaceMark.size());
      } else {
        out += c;
      }
    }
    return out;
  }

  // Code points, except that user-defined pieces are kept whole (longest match).
  std::vector<ByteRange> InitialSymbols(absl::string_view text) const {
    std::vector<ByteRange> chars = SplitUtf8(text);
    if (user_defined_.empty()) return chars;
    std::vector<ByteRange> out;
    for (size_t i = 0; i < chars.size();) {
      size_t matched = 0;
      const size_t begin = chars[i].begin;
      for (size_t len = std::min(max_user_defined_, text.size() - begin); len > 0; --len) {
        if (user_defined_.count(std::string(text.substr(begin, len))) != 0) {
          matched = len;
          break;
        }
      }
      if (matched == 0) {
        out.push_back(chars[i++]);
        continue;
      }
      out.push_back({begin, matched});
      while (i < chars.size() && chars[i].begin < begin + matched) ++i;
    }
    return out;
  }

  SentencePieceModel model_;
  std::unordered_map<std::string, int32_t> mergeable_;
  std::unordered_map<std::string, int32_t> user_defined_;
  size_t max_user_defined_ = 0;
  int32_t byte_ids_[256];
  // Scratch for the merge callback (Encode is logically const; this is reused per call).
  static thread_local std::string joined_;
};

thread_local std::string SentencePieceBpeTokenizer::joined_;

}  // namespace

absl::StatusOr<std::unique_ptr<Tokenizer>> LoadSentencePieceTokenizer(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat("cannot open tokenizer file ", path));
  std::stringstream bytes;
  bytes << in.rdbuf();
  ASSIGN_OR_RETURN(SentencePieceModel model, ParseSentencePieceModel(bytes.str(), path));
  auto tokenizer = std::make_unique<SentencePieceBpeTokenizer>(std::move(model));
  RETURN_IF_ERROR(tokenizer->Check(path));
  return std::unique_ptr<Tokenizer>(std::move(tokenizer));
}

}  // namespace quantd::model
