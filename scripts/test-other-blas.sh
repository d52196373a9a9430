#!/usr/bin/env bash
# Runs the test suite a second time with OpenBLAS forced onto another kernel family
# (OPENBLAS_CORETYPE), so every matmul sums in another order and rounds differently in the last
# bits, as a GPU does. A test that passes only with the default kernel's exact bits fails here,
# on a machine without a GPU. Usage: scripts/test-other-blas.sh BUILD_DIR [ctest args...]
set -euo pipefail
build_dir="$1"
shift
if ! ldd "$build_dir/worker/quantd-worker" | grep -q libopenblas; then
  echo "test-other-blas: LibTorch does not use OpenBLAS here; nothing to vary" >&2
  exit 1
fi
# The default kernel on AVX2 machines is Haswell or newer; Sandybridge (AVX, no FMA) sums and
# rounds differently. Without AVX2, fall back to the SSE kernels of Nehalem.
if grep -qw avx2 /proc/cpuinfo; then core=Sandybridge; else core=Nehalem; fi
echo "== the suite again with OPENBLAS_CORETYPE=$core =="
OPENBLAS_CORETYPE=$core ctest --test-dir "$build_dir" "$@"
