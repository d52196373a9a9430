// The version of quantd every process reports (in logs, Hello, export manifests).
#ifndef QUANTD_PROTO_COMMON_VERSION_H_
#define QUANTD_PROTO_COMMON_VERSION_H_

#include <string>

namespace quantd {

// "MAJOR.MINOR.PATCH" from CMake's project(), plus "+g<commit>" when built from git.
std::string VersionString();

}  // namespace quantd

#endif  // QUANTD_PROTO_COMMON_VERSION_H_
