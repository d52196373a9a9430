// Hugging Face tokenizer.json with a BPE model. Supported pieces (anything else is rejected
// with UNIMPLEMENTED when loading):
//   normalizer:    null, Prepend, Replace (string pattern), Sequence of these
//   pre_tokenizer: null, Split (regex or string, behavior Isolated/Removed), ByteLevel,
//                  Metaspace, Sequence of these
//   model:         BPE with merges, byte_fallback, ignore_merges, unk token
//   decoder:       byte-level when the pre-tokenizer or decoder is ByteLevel; otherwise
//                  sentencepiece-style (U+2581 to space, <0xXX> bytes, leading space stripped)
// Added tokens are matched verbatim in the input before normalization. Decode() drops special
// added tokens, like the sentencepiece tokenizer drops control pieces.
#include <sys/stat.h>

#include <algorithm>
#include <cstdio>
#include <fstream>
#include <set>
#include <sstream>
#include <unordered_map>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "nlohmann/json.hpp"
#include "proto/common/status_macros.h"
#include "worker/model/bpe.h"
#include "worker/model/tokenizer.h"
#include "worker/model/unicode_regex.h"

namespace quantd::model {
namespace {

using nlohmann::json;

constexpr absl::string_view kSpaceMark = "\xE2\x96\x81";  // U+2581

void AppendUtf8(uint32_t cp, std::string* out) {
  if (cp < 0x80) {
    *out += static_cast<char>(cp);
  } else if (cp < 0x800) {
    *out += static_cast<char>(0xC0 | (cp >> 6));
    *out += static_cast<char>(0x80 | (cp & 0x3F));
  } else {
    *out += static_cast<char>(0xE0 | (cp >> 12));
    *out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    *out += static_cast<char>(0x80 | (cp & 0x3F));
  }
}

// The GPT-2 byte-to-character table: printable Latin-1 bytes stand for themselves, the others
// are moved to U+0100 and up, in byte order.
struct ByteLevelTable {
  std::string byte_to_utf8[256];
  std::unordered_map<std::string, uint8_t> utf8_to_byte;
  ByteLevelTable() {
    uint32_t next = 256;
    for (uint32_t b = 0; b < 256; ++b) {
      const bool printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || b >= 0xAE;
      AppendUtf8(printable ? b : next++, &byte_to_utf8[b]);
      utf8_to_byte[byte_to_utf8[b]] = static_cast<uint8_t>(b);
    }
  }
};

const ByteLevelTable& ByteLevel() {
  static const ByteLevelTable* table = new ByteLevelTable();
  return *table;
}

std::string ReplaceAll(absl::string_view text, absl::string_view from, absl::string_view to) {
  if (from.empty()) return std::string(text);
  std::string out;
  size_t pos = 0;
  while (true) {
    const size_t hit = text.find(from, pos);
    if (hit == absl::string_view::npos) break;
    out.append(text.data() + pos, hit - pos);
    out.append(to.data(), to.size());
    pos = hit + from.size();
  }
  out.append(text.data() + pos, text.size() - pos);
  return out;
}

absl::Status Unsupported(absl::string_view label, absl::string_view what) {
  return absl::UnimplementedError(absl::StrCat("tokenizer ", label, ": ", what));
}

struct NormalizerStep {
  enum class Kind { kPrepend, kReplace } kind;
  std::string a, b;
};

struct PreTokenizerStep {
  enum class Kind { kSplit, kByteLevel, kMetaspace } kind;
  std::shared_ptr<UnicodeRegex> regex;  // kSplit (and kByteLevel with use_regex)
  std::string literal;                  // kSplit with a string pattern
  bool remove_matches = false;          // kSplit behavior Removed
  bool add_prefix_space = false;        // kByteLevel
  std::string replacement;              // kMetaspace
  std::string prepend_scheme;           // kMetaspace: always, first, never
  bool split = false;                   // kMetaspace
};

// GPT-2's pre-tokenizer pattern, used by ByteLevel with use_regex.
constexpr char kGpt2Pattern[] =
    "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";

class HfBpeTokenizer : public Tokenizer {
 public:
  absl::Status Load(const json& root, absl::string_view label, const json* config) {
    label_ = std::string(label);
    const json& model = root.value("model", json());
    if (!model.is_object() || model.value("type", "") != "BPE") {
      return Unsupported(label, "only BPE models are supported");
    }
    for (const char* key : {"continuing_subword_prefix", "end_of_word_suffix"}) {
      if (model.contains(key) && !model[key].is_null() && model[key] != "") {
        return Unsupported(label, absl::StrCat("BPE option ", key, " is not supported"));
      }
    }
    const json& vocab = model.value("vocab", json());
    if (!vocab.is_object() || vocab.empty()) return Invalid("model.vocab is missing or empty");
    for (const auto& [token, id] : vocab.items()) {
      if (!id.is_number_integer() || id.get<int64_t>() < 0 || id.get<int64_t>() > (1 << 24)) {
        return Invalid(absl::StrCat("vocab id of '", token, "' is not a valid id"));
      }
      AddToken(token, id.get<int32_t>());
      vocab_.emplace(token, id.get<int32_t>());
    }
    const json& merges = model.value("merges", json::array());
    if (!merges.is_array()) return Invalid("model.merges is not a list");
    int rank = 0;
    for (const auto& merge : merges) {
      std::string left, right;
      if (merge.is_string()) {
        const std::string m = merge.get<std::string>();
        const size_t space = m.find(' ');
        if (space == std::string::npos || m.find(' ', space + 1) != std::string::npos) {
          return Invalid(absl::StrCat("merge \"", m, "\" is not two tokens"));
        }
        left = m.substr(0, space);
        right = m.substr(space + 1);
      } else if (merge.is_array() && merge.size() == 2 && merge[0].is_string() &&
                 merge[1].is_string()) {
        left = merge[0].get<std::string>();
        right = merge[1].get<std::string>();
      } else {
        return Invalid("a merge is neither \"a b\" nor [\"a\", \"b\"]");
      }
      merge_rank_.emplace(left + '\0' + right, rank++);
    }
    byte_fallback_ = model.value("byte_fallback", false);
    ignore_merges_ = model.value("ignore_merges", false);
    fuse_unk_ = model.value("fuse_unk", false);
    if (model.contains("unk_token") && model["unk_token"].is_string()) {
      auto it = vocab_.find(model["unk_token"].get<std::string>());
      if (it != vocab_.end()) unk_id_ = it->second;
    }
    if (byte_fallback_) {
      for (int b = 0; b < 256; ++b) {
        auto it = vocab_.find(absl::StrFormat("<0x%02X>", b));
        if (it == vocab_.end())
          return Invalid("byte_fallback is set but a <0xXX> token is missing");
        byte_ids_[b] = it->second;
      }
    }

    const json& added = root.value("added_tokens", json::array());
    if (!added.is_array()) return Invalid("added_tokens is not a list");
    for (const auto& token : added) {
      if (!token.is_object() || !token.value("content", json()).is_string() ||
          !token.value("id", json()).is_number_integer() || token["id"].get<int64_t>() < 0 ||
          token["id"].get<int64_t>() > (1 << 24)) {
        return Invalid("an added token lacks a string content or a valid id");
      }
      const std::string content = token["content"].get<std::string>();
      if (content.empty()) continue;
      const int32_t id = token["id"].get<int32_t>();
      added_.push_back({content, id});
      AddToken(content, id);
      if (token.value("special", false)) special_ids_.insert(id);
    }
    std::sort(added_.begin(), added_.end(), [](const auto& a, const auto& b) {
      return a.first.size() > b.first.size();  // longest match first
    });
    for (size_t i = 0; i < added_.size(); ++i) {
      added_by_first_byte_[static_cast<unsigned char>(added_[i].first[0])].push_back(i);
    }

    RETURN_IF_ERROR(LoadNormalizer(root.value("normalizer", json())));
    RETURN_IF_ERROR(LoadPreTokenizer(root.value("pre_tokenizer", json())));
    const json& decoder = root.value("decoder", json());
    if (decoder.is_object() && decoder.value("type", "") == "ByteLevel") byte_level_ = true;
    LoadDecoderStrip(decoder);

    bos_id_ = SpecialId(config, "bos_token", {"<s>", "<|begin_of_text|>"});
    eos_id_ = SpecialId(config, "eos_token", {"</s>", "<|end_of_text|>"});
    return absl::OkStatus();
  }

  absl::StatusOr<std::vector<int32_t>> Encode(absl::string_view text) const override {
    std::vector<int32_t> ids;
    bool first_section = true;
    size_t pos = 0;
    size_t plain_begin = 0;
    while (pos <= text.size()) {
      const std::pair<std::string, int32_t>* hit = nullptr;
      if (pos < text.size()) {
        for (size_t index : added_by_first_byte_[static_cast<unsigned char>(text[pos])]) {
          const auto& token = added_[index];
          if (text.compare(pos, token.first.size(), token.first) == 0) {
            hit = &token;
            break;
          }
        }
      }
      if (hit == nullptr && pos < text.size()) {
        ++pos;
        continue;
      }
      if (pos > plain_begin) {
        EncodeSection(text.substr(plain_begin, pos - plain_begin), first_section, &ids);
        first_section = false;
      }
      if (hit == nullptr) break;
      ids.push_back(hit->second);
      first_section = false;
      pos += hit->first.size();
      plain_begin = pos;
    }
    return ids;
  }

  absl::StatusOr<std::string> Decode(const std::vector<int32_t>& ids) const override {
    std::string joined;
    for (int32_t id : ids) {
      if (id < 0 || id >= vocab_size() || id_to_token_[id].empty()) {
        return absl::InvalidArgumentError(
            absl::StrCat("token id ", id, " outside the vocabulary [0, ", vocab_size(), ")"));
      }
      if (special_ids_.count(id) != 0) continue;
      joined += id_to_token_[id];
    }
    if (byte_level_) {
      std::string out;
      for (const ByteRange& c : SplitUtf8(joined)) {
        const std::string ch = joined.substr(c.begin, c.length);
        auto it = ByteLevel().utf8_to_byte.find(ch);
        out += it != ByteLevel().utf8_to_byte.end() ? std::string(1, char(it->second)) : ch;
      }
      return out;
    }
    std::string out;
    for (size_t i = 0; i < joined.size();) {
      unsigned byte = 0;
      if (byte_fallback_ && joined.compare(i, 3, "<0x") == 0 && i + 6 <= joined.size() &&
          joined[i + 5] == '>' && std::sscanf(joined.c_str() + i, "<0x%02X>", &byte) == 1) {
        out += static_cast<char>(byte);
        i += 6;
      } else if (joined.compare(i, kSpaceMark.size(), kSpaceMark.data(), kSpaceMark.size()) == 0) {
        out += ' ';
        i += kSpaceMark.size();
      } else {
        out += joined[i++];
      }
    }
    for (int i = 0; i < strip_leading_ && !out.empty() && out[0] == ' '; ++i) out.erase(0, 1);
    return out;
  }

  int32_t vocab_size() const override { return static_cast<int32_t>(id_to_token_.size()); }
  int32_t bos_id() const override { return bos_id_; }
  int32_t eos_id() const override { return eos_id_; }

 private:
  absl::Status Invalid(absl::string_view what) const {
    return absl::InvalidArgumentError(absl::StrCat("tokenizer ", label_, ": ", what));
  }

  void AddToken(const std::string& token, int32_t id) {
    if (static_cast<size_t>(id) >= id_to_token_.size()) id_to_token_.resize(id + 1);
    id_to_token_[id] = token;
  }

  absl::Status LoadNormalizer(const json& n) {
    if (n.is_null()) return absl::OkStatus();
    const std::string type = n.value("type", "");
    if (type == "Sequence") {
      for (const auto& step : n.value("normalizers", json::array())) {
        RETURN_IF_ERROR(LoadNormalizer(step));
      }
      return absl::OkStatus();
    }
    if (type == "Prepend" && n.value("prepend", json()).is_string()) {
      normalizers_.push_back({NormalizerStep::Kind::kPrepend, n["prepend"], ""});
      return absl::OkStatus();
    }
    if (type == "Replace" && n.value("pattern", json()).is_object() &&
        n["pattern"].value("String", json()).is_string() &&
        n.value("content", json()).is_string()) {
      normalizers_.push_back(
          {NormalizerStep::Kind::kReplace, n["pattern"]["String"], n["content"]});
      return absl::OkStatus();
    }
    return Unsupported(label_, absl::StrCat("normalizer ", n.dump(), " is not supported"));
  }

  absl::Status LoadPreTokenizer(const json& p) {
    if (p.is_null()) return absl::OkStatus();
    const std::string type = p.value("type", "");
    if (type == "Sequence") {
      for (const auto& step : p.value("pretokenizers", json::array())) {
        RETURN_IF_ERROR(LoadPreTokenizer(step));
      }
      return absl::OkStatus();
    }
    PreTokenizerStep step;
    if (type == "Split") {
      step.kind = PreTokenizerStep::Kind::kSplit;
      const std::string behavior = p.value("behavior", "");
      if ((behavior != "Isolated" && behavior != "Removed") || p.value("invert", false)) {
        return Unsupported(label_, absl::StrCat("Split behavior ", behavior, " is not supported"));
      }
      step.remove_matches = behavior == "Removed";
      const json& pattern = p.value("pattern", json());
      if (pattern.is_object() && pattern.value("Regex", json()).is_string()) {
        auto regex = UnicodeRegex::Compile(pattern["Regex"].get<std::string>());
        if (!regex.ok()) return Invalid(regex.status().message());
        step.regex = std::move(regex).value();
      } else if (pattern.is_object() && pattern.value("String", json()).is_string()) {
        step.literal = pattern["String"].get<std::string>();
      } else {
        return Invalid("Split pre-tokenizer without a Regex or String pattern");
      }
    } else if (type == "ByteLevel") {
      step.kind = PreTokenizerStep::Kind::kByteLevel;
      step.add_prefix_space = p.value("add_prefix_space", false);
      if (p.value("use_regex", true)) {
        auto regex = UnicodeRegex::Compile(kGpt2Pattern);
        if (!regex.ok()) return regex.status();
        step.regex = std::move(regex).value();
      }
      byte_level_ = true;
    } else if (type == "Metaspace") {
      step.kind = PreTokenizerStep::Kind::kMetaspace;
      step.replacement = p.value("replacement", std::string(kSpaceMark));
      step.prepend_scheme =
          p.value("prepend_scheme", p.value("add_prefix_space", true) ? "always" : "never");
      step.split = p.value("split", true);
      if (strip_leading_ == 0 && step.prepend_scheme != "never") strip_leading_ = 1;
    } else {
      return Unsupported(label_, absl::StrCat("pre_tokenizer ", type, " is not supported"));
    }
    pre_tokenizers_.push_back(std::move(step));
    return absl::OkStatus();
  }

  void LoadDecoderStrip(const json& d) {
    if (!d.is_object()) return;
    if (d.value("type", "") == "Sequence") {
      for (const auto& step : d.value("decoders", json::array())) LoadDecoderStrip(step);
    } else if (d.value("type", "") == "Strip" && d.value("content", "") == " ") {
      strip_leading_ = d.value("start", 0);
    }
  }

  int32_t SpecialId(const json* config, const char* key,
                    std::initializer_list<const char*> fallbacks) const {
    std::vector<std::string> names;
    if (config != nullptr && config->contains(key)) {
      const json& v = (*config)[key];
      if (v.is_string()) names.push_back(v.get<std::string>());
      if (v.is_object() && v.value("content", json()).is_string()) names.push_back(v["content"]);
    }
    for (const char* name : fallbacks) names.push_back(name);
    for (const auto& name : names) {
      for (size_t id = 0; id < id_to_token_.size(); ++id) {
        if (id_to_token_[id] == name) return static_cast<int32_t>(id);
      }
    }
    return -1;
  }

  void EncodeSection(absl::string_view text, bool first_section, std::vector<int32_t>* ids) const {
    std::string normalized(text);
    for (const auto& step : normalizers_) {
      if (step.kind == NormalizerStep::Kind::kPrepend) {
        if (!normalized.empty()) normalized = step.a + normalized;
      } else {
        normalized = ReplaceAll(normalized, step.a, step.b);
      }
    }
    std::vector<std::string> pieces = {normalized};
    for (const auto& step : pre_tokenizers_) pieces = PreTokenize(step, pieces, first_section);
    for (const auto& piece : pieces) EncodeWord(piece, ids);
  }

  std::vector<std::string> PreTokenize(const PreTokenizerStep& step,
                                       const std::vector<std::string>& pieces,
                                       bool first_section) const {
    std::vector<std::string> out;
    for (size_t index = 0; index < pieces.size(); ++index) {
      std::string piece = pieces[index];
      if (piece.empty()) continue;
      switch (step.kind) {
        case PreTokenizerStep::Kind::kSplit:
          SplitPiece(step, piece, &out);
          break;
        case PreTokenizerStep::Kind::kByteLevel: {
          if (step.add_prefix_space && piece[0] != ' ') piece = " " + piece;
          std::vector<std::string> parts;
          if (step.regex) {
            SplitPiece(step, piece, &parts);
          } else {
            parts.push_back(piece);
          }
          for (const auto& part : parts) {
            std::string mapped;
            for (unsigned char c : part) mapped += ByteLevel().byte_to_utf8[c];
            out.push_back(std::move(mapped));
          }
          break;
        }
        case PreTokenizerStep::Kind::kMetaspace: {
          std::string replaced = ReplaceAll(piece, " ", step.replacement);
          const bool prepend = step.prepend_scheme == "always" ||
                               (step.prepend_scheme == "first" && first_section && index == 0);
          if (prepend && replaced.compare(0, step.replacement.size(), step.replacement) != 0) {
            replaced = step.replacement + replaced;
          }
          if (!step.split) {
            out.push_back(std::move(replaced));
            break;
          }
          size_t start = 0;
          for (size_t hit = replaced.find(step.replacement, 1); hit != std::string::npos;
               hit = replaced.find(step.replacement, hit + 1)) {
            if (hit > start) out.push_back(replaced.substr(start, hit - start));
            start = hit;
          }
          out.push_back(replaced.substr(start));
          break;
        }
      }
    }
    return out;
  }

  // Isolated: matches and the gaps between them become pieces; Removed: only the gaps.
  void SplitPiece(const PreTokenizerStep& step, const std::string& piece,
                  std::vector<std::string>* out) const {
    std::vector<ByteRange> matches;
    if (step.regex) {
      matches = step.regex->FindAll(piece);
    } else if (!step.literal.empty()) {
      for (size_t hit = piece.find(step.literal); hit != std::string::npos;
           hit = piece.find(step.literal, hit + step.literal.size())) {
        matches.push_back({hit, step.literal.size()});
      }
    }
    size_t pos = 0;
    for (const auto& m : matches) {
      if (m.begin > pos) out->push_back(piece.substr(pos, m.begin - pos));
      if (!step.remove_matches) out->push_back(piece.substr(m.begin, m.length));
      pos = m.begin + m.length;
    }
    if (pos < piece.size()) out->push_back(piece.substr(pos));
  }

  void EncodeWord(const std::string& word, std::vector<int32_t>* ids) const {
    if (ignore_merges_) {
      auto it = vocab_.find(word);
      if (it != vocab_.end()) {
        ids->push_back(it->second);
        return;
      }
    }
    std::string scratch;
    auto merged = BpeMerge(word, SplitUtf8(word),
                           [&](absl::string_view a, absl::string_view b, double* score) {
                             scratch.assign(a.data(), a.size());
                             scratch += '\0';
                             scratch.append(b.data(), b.size());
                             auto it = merge_rank_.find(scratch);
                             if (it == merge_rank_.end()) return false;
                             *score = -static_cast<double>(it->second);
                             return true;
                           });
    bool last_unk = false;
    for (const auto& symbol : merged) {
      const std::string token = word.substr(symbol.begin, symbol.length);
      auto it = vocab_.find(token);
      if (it != vocab_.end()) {
        ids->push_back(it->second);
        last_unk = false;
      } else if (byte_fallback_) {
        for (unsigned char c : token) ids->push_back(byte_ids_[c]);
        last_unk = false;
      } else if (unk_id_ >= 0 && !(fuse_unk_ && last_unk)) {
        ids->push_back(unk_id_);
        last_unk = true;
      }
    }
  }

  std::string label_;
  std::unordered_map<std::string, int32_t> vocab_;
  std::vector<std::string> id_to_token_;
  std::unordered_map<std::string, int> merge_rank_;
  std::vector<std::pair<std::string, int32_t>> added_;
  std::vector<size_t> added_by_first_byte_[256];  // indices into added_, longest first
  std::set<int32_t> special_ids_;
  std::vector<NormalizerStep> normalizers_;
  std::vector<PreTokenizerStep> pre_tokenizers_;
  bool byte_fallback_ = false;
  bool ignore_merges_ = false;
  bool fuse_unk_ = false;
  bool byte_level_ = false;
  int strip_leading_ = 0;
  int32_t unk_id_ = -1;
  int32_t byte_ids_[256] = {};
  int32_t bos_id_ = -1;
  int32_t eos_id_ = -1;
};

absl::StatusOr<json> ReadJson(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat("cannot open ", path));
  std::stringstream text;
  text << in.rdbuf();
  json root = json::parse(text.str(), nullptr, /*allow_exceptions=*/false);
  if (root.is_discarded() || !root.is_object()) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": not a JSON object"));
  }
  return root;
}

}  // namespace

absl::StatusOr<std::unique_ptr<Tokenizer>> LoadHfTokenizer(const std::string& path) {
  ASSIGN_OR_RETURN(json root, ReadJson(path));
  json config;
  const size_t slash = path.rfind('/');
  const std::string config_path =
      (slash == std::string::npos ? std::string() : path.substr(0, slash + 1)) +
      "tokenizer_config.json";
  struct stat st;
  if (::stat(config_path.c_str(), &st) == 0) {
    ASSIGN_OR_RETURN(config, ReadJson(config_path));
  }
  auto tokenizer = std::make_unique<HfBpeTokenizer>();
  try {
    RETURN_IF_ERROR(tokenizer->Load(root, path, config.is_object() ? &config : nullptr));
  } catch (const json::exception& e) {
    return absl::InvalidArgumentError(absl::StrCat("tokenizer ", path, ": ", e.what()));
  }
  return std::unique_ptr<Tokenizer>(std::move(tokenizer));
}

}  // namespace quantd::model
