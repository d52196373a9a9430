// Test oracle: libsentencepiece behind an interface with only standard types.
// libsentencepiece's header declares its own absl::string_view, which clashes with
// Abseil's, so only sentencepiece_backend.cc includes it. Never link this into a binary that
// loads LibTorch (see worker/model/sentencepiece_model.h).
#ifndef QUANTD_TESTS_MODEL_SENTENCEPIECE_BACKEND_H_
#define QUANTD_TESTS_MODEL_SENTENCEPIECE_BACKEND_H_

#include <memory>
#include <string>
#include <vector>

namespace quantd::model::spm {

class Backend {
 public:
  Backend();
  ~Backend();
  // False with *error set when the file cannot be read or parsed.
  bool Load(const std::string& path, std::string* error);
  bool Encode(const std::string& text, std::vector<int>* ids, std::string* error) const;
  bool Decode(const std::vector<int>& ids, std::string* text, std::string* error) const;
  int vocab_size() const;
  int bos_id() const;
  int eos_id() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace quantd::model::spm

#endif  // QUANTD_TESTS_MODEL_SENTENCEPIECE_BACKEND_H_
