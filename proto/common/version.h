// The version of quantd every process reports (in logs, Hello, export manifests).
#ifndef QUANTD_PROTO_COMMON_VERSION_H_
#define QUANTD_PROTO_COMMON_VERSION_H_

#include <string>

namespace quantd {

// "MAJOR.MINOR.PATCH" from CMake's project(), plus "+g<commit>" when built from git. The commit
// is the one checked out when CMake configured the build: an incremental build after later
// commits keeps reporting it (stamping every build would relink every program); rerun cmake,
// or build from a clean folder as CI does, for a release.
std::string VersionString();

}  // namespace quantd

#endif  // QUANTD_PROTO_COMMON_VERSION_H_
