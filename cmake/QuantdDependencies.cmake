# Third-party libraries, all from Debian 12 packages (see scripts/install-deps.sh).
# A GPU machine finds the same libraries under QUANTD_DEPS_PREFIX (see scripts/gpu/).
set(QUANTD_DEPS_PREFIX "" CACHE PATH "Extra prefix with unpacked dependency packages")
if(QUANTD_DEPS_PREFIX)
  list(PREPEND CMAKE_PREFIX_PATH ${QUANTD_DEPS_PREFIX}/usr
       ${QUANTD_DEPS_PREFIX}/usr/lib/x86_64-linux-gnu/cmake)
endif()

find_package(Threads REQUIRED)
find_package(absl CONFIG REQUIRED)
find_package(Protobuf REQUIRED)
find_package(nlohmann_json CONFIG REQUIRED)
find_package(spdlog CONFIG REQUIRED)
find_package(yaml-cpp CONFIG REQUIRED)

# The service stack (gRPC, SQLite, Prometheus) is optional so that the ML pipeline can be
# built on a machine that has LibTorch but not the service stack.
option(QUANTD_BUILD_SERVICES "Build quantd, quantctl and the worker's scheduler link" ON)
if(QUANTD_BUILD_SERVICES)
  find_package(gRPC CONFIG REQUIRED)
  find_package(SQLite3 REQUIRED)
  find_package(prometheus-cpp CONFIG REQUIRED)
  find_program(QUANTD_GRPC_CPP_PLUGIN grpc_cpp_plugin REQUIRED)
endif()

find_package(PkgConfig REQUIRED)
pkg_check_modules(SENTENCEPIECE REQUIRED IMPORTED_TARGET sentencepiece)

option(QUANTD_BUILD_TESTS "Build the test suites" ON)
if(QUANTD_BUILD_TESTS)
  find_package(GTest REQUIRED)
  find_package(benchmark CONFIG REQUIRED)
endif()
