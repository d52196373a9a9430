#include "tests/model/sentencepiece_backend.h"

#include <sentencepiece_processor.h>

namespace quantd::model::spm {

struct Backend::Impl {
  sentencepiece::SentencePieceProcessor processor;
};

Backend::Backend() : impl_(std::make_unique<Impl>()) {}
Backend::~Backend() = default;

bool Backend::Load(const std::string& path, std::string* error) {
  const auto status = impl_->processor.Load(path);
  if (!status.ok()) *error = status.ToString();
  return status.ok();
}

bool Backend::Encode(const std::string& text, std::vector<int>* ids, std::string* error) const {
  const auto status = impl_->processor.Encode(text, ids);
  if (!status.ok()) *error = status.ToString();
  return status.ok();
}

bool Backend::Decode(const std::vector<int>& ids, std::string* text, std::string* error) const {
  const auto status = impl_->processor.Decode(ids, text);
  if (!status.ok()) *error = status.ToString();
  return status.ok();
}

int Backend::vocab_size() const { return impl_->processor.GetPieceSize(); }
int Backend::bos_id() const { return impl_->processor.bos_id(); }
int Backend::eos_id() const { return impl_->processor.eos_id(); }

}  // namespace quantd::model::spm
