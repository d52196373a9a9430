#include "proto/common/writable_folder.h"

#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>

#include "absl/strings/str_cat.h"

namespace quantd {

absl::Status CheckWritableFolder(const std::string& folder, const std::string& what) {
  std::error_code error;
  std::filesystem::create_directories(folder, error);
  if (error) {
    return absl::FailedPreconditionError(
        absl::StrCat(what, ": cannot create the folder ", folder, ": ", error.message()));
  }
  if (!std::filesystem::is_directory(folder, error)) {
    return absl::FailedPreconditionError(absl::StrCat(what, ": ", folder, " is not a folder"));
  }
  if (::access(folder.c_str(), W_OK | X_OK) != 0) {
    return absl::FailedPreconditionError(
        absl::StrCat(what, ": cannot write in ", folder, ": ", std::strerror(errno)));
  }
  return absl::OkStatus();
}

}  // namespace quantd
