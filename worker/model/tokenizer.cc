#include "worker/model/tokenizer.h"

#include <sys/stat.h>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

namespace quantd::model {
namespace {

bool IsFile(const std::string& path) {
  struct stat st;
  return ::stat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode);
}

}  // namespace

absl::StatusOr<std::unique_ptr<Tokenizer>> LoadTokenizer(const std::string& model_dir) {
  if (IsFile(model_dir + "/tokenizer.model")) {
    return LoadSentencePieceTokenizer(model_dir + "/tokenizer.model");
  }
  if (IsFile(model_dir + "/tokenizer.json")) {
    return LoadHfTokenizer(model_dir + "/tokenizer.json");
  }
  return absl::NotFoundError(absl::StrCat("no tokenizer.model or tokenizer.json in ", model_dir));
}

}  // namespace quantd::model
