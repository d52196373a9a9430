#!/usr/bin/env bash
# Builds quantd on a GPU machine that has CUDA, PyTorch (its LibTorch and CMake config), CMake
# and ninja but neither the service libraries nor network access. Run from the repository root
# after scripts/gpu/fetch-debs.sh has filled .gpu/ on a Debian 12 machine and .gpu/ was copied
# over:
#
#   bash scripts/gpu/build.sh            # unpack, configure, build (build-gpu/)
#   bash scripts/gpu/build.sh test       # the same, then ctest (the *_CUDA tests first)
#
# Environment: PYTHON (default python3, the interpreter that has torch), QUANTD_GPU_DEPS (where
# the packages are unpacked, default /tmp/quantd-deps), QUANTD_GPU_BUILD (default build-gpu),
# QUANTD_GPU_ARCH (CUDA architectures, default: the visible device's, else "80;90"),
# QUANTD_GPU_LOGS (folder for the logs, default the build folder), BUILD_TIMEOUT (seconds),
# QUANTD_GPU_TARGETS (build only these targets, e.g. one test after a fix).
# scripts/gpu/env.sh holds the environment the built programs need; build.sh sources it.
set -uo pipefail
cd "$(dirname "$0")/../.."

readonly STAGE=${1:-build}
readonly BUILD_DIR=${QUANTD_GPU_BUILD:-build-gpu}
readonly LOGS=${QUANTD_GPU_LOGS:-$BUILD_DIR}
mkdir -p "$BUILD_DIR" "$LOGS"
step() { printf '\n== %s (%s)\n' "$*" "$(date +%T)"; }

step "unpacking $(ls .gpu/debs/*.deb 2>/dev/null | wc -l) packages"
if ! ls .gpu/debs/*.deb >/dev/null 2>&1; then
  echo "build.sh: .gpu/debs is empty; run scripts/gpu/fetch-debs.sh on a Debian 12 machine" >&2
  exit 1
fi
# shellcheck source=scripts/gpu/env.sh
source scripts/gpu/env.sh
mkdir -p "$QUANTD_GPU_DEPS"
for deb in .gpu/debs/*.deb; do dpkg-deb -x "$deb" "$QUANTD_GPU_DEPS" || exit 1; done
# The tests read ../shared/data; the device machine has it only inside .gpu/.
if [ ! -e ../shared/data ] && [ -d .gpu/data ]; then
  mkdir -p ../shared && ln -sfn "$PWD/.gpu/data" ../shared/data
fi

step "toolchain"
g++ --version | head -1
cmake --version | head -1
nvcc --version | tail -1
env -u LD_PRELOAD "$PYTHON" -c 'import torch; print("torch", torch.__version__, "cuda", torch.version.cuda,
              "device", torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none")'
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true

torch_prefix=$(env -u LD_PRELOAD "$PYTHON" -c 'import torch; print(torch.utils.cmake_prefix_path)')
torch_include=$(env -u LD_PRELOAD "$PYTHON" -c 'import os, torch; print(os.path.join(os.path.dirname(torch.__file__), "include"))')
# The code is C++17; a LibTorch whose headers demand a later standard gets C++20.
cxx_standard=17
if ! echo '#include <ATen/core/Tensor.h>' |
     g++ -std=c++17 -fsyntax-only -I"$torch_include" -x c++ - >"$LOGS/std-probe.log" 2>&1; then
  cxx_standard=20
  head -5 "$LOGS/std-probe.log"
fi
arch=${QUANTD_GPU_ARCH:-$(nvidia-smi --query-gpu=compute_cap --format=csv,noheader 2>/dev/null |
                          head -1 | tr -d '.')}
arch=${arch:-"80;90"}

# PyTorch's include folder carries an older google/protobuf of its own, which shadows the
# packages' protobuf in files that include both. It is renamed google.bundled (LibTorch's own
# headers do not use it; `mv` it back to build PyTorch extensions that do).
if [ -d "$torch_include/google/protobuf" ]; then
  mv "$torch_include/google" "$torch_include/google.bundled" || exit 1
  echo "build.sh: moved $torch_include/google aside (google.bundled)"
fi
step "configure (C++$cxx_standard, CUDA architectures $arch)"
cmake -S . -B "$BUILD_DIR" -G Ninja \
  -DCMAKE_BUILD_TYPE=Release \
  -DCMAKE_PREFIX_PATH="$torch_prefix" \
  -DQUANTD_DEPS_PREFIX="$QUANTD_GPU_DEPS" \
  -DQUANTD_WERROR=OFF \
  -DQUANTD_PYTHON_TESTS=OFF \
  -DCMAKE_CXX_STANDARD="$cxx_standard" \
  -DCMAKE_CUDA_ARCHITECTURES="$arch" \
  -DPKG_CONFIG_EXECUTABLE="$QUANTD_GPU_DEPS/usr/bin/pkgconf" \
  >"$LOGS/configure.log" 2>&1
configure_status=$?
tail -5 "$LOGS/configure.log"
if [ $configure_status -ne 0 ]; then
  grep -n -A3 "CMake Error" "$LOGS/configure.log" | head -40
  exit $configure_status
fi

step "build ($(nproc) jobs)"
# -k 0: one file that does not compile does not hide the others' errors.
# QUANTD_GPU_TARGETS (space-separated) builds only those targets, for a quick recheck.
# shellcheck disable=SC2086
timeout "${BUILD_TIMEOUT:-1800}" cmake --build "$BUILD_DIR" -j "$(nproc)" \
  ${QUANTD_GPU_TARGETS:+--target $QUANTD_GPU_TARGETS} -- -k 0 \
  >"$LOGS/build.log" 2>&1
build_status=$?
tail -3 "$LOGS/build.log"
if [ $build_status -ne 0 ]; then
  echo "build.sh: build failed ($build_status); first errors:"
  grep -n -m 30 -E "error:|Error [0-9]|undefined reference" "$LOGS/build.log"
fi
[ "$STAGE" = test ] || exit $build_status

step "CUDA tests"
ctest --test-dir "$BUILD_DIR" -R "_CUDA" --output-on-failure --timeout 300 \
  2>&1 | tee "$LOGS/ctest-cuda.log" | tail -30
step "whole suite"
# Each test process gets 2 intra-op threads: nproc processes of nproc threads each starve.
OMP_NUM_THREADS=2 ctest --test-dir "$BUILD_DIR" -j "$(( $(nproc) / 2 ))" --output-on-failure --timeout 300 \
  >"$LOGS/ctest.log" 2>&1
test_status=$?
grep -E "tests passed|tests failed|\(Failed\)|\(Timeout\)|\*\*\*" "$LOGS/ctest.log" | tail -40
exit $((build_status | test_status))
