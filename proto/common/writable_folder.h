// Early checks of the folders a job will write into, so that a path a user got wrong fails the
// job before its work rather than after it.
#ifndef QUANTD_PROTO_COMMON_WRITABLE_FOLDER_H_
#define QUANTD_PROTO_COMMON_WRITABLE_FOLDER_H_

#include <string>

#include "absl/status/status.h"

namespace quantd {

// Creates `folder` (and its parents) when missing, then checks that this process may create
// files in it. FAILED_PRECONDITION naming `what` (e.g. "output_dir"), the folder and the
// system's reason otherwise.
absl::Status CheckWritableFolder(const std::string& folder, const std::string& what);

}  // namespace quantd

#endif  // QUANTD_PROTO_COMMON_WRITABLE_FOLDER_H_
