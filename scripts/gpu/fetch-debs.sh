#!/usr/bin/env bash
# Runs on a Debian 12 machine with network access to the Debian mirror (no root needed).
# Downloads the Debian packages that a GPU machine lacks (gRPC, protobuf, abseil, spdlog,
# SQLite, prometheus-cpp, yaml-cpp, ICU, GoogleTest, Google Benchmark, pkg-config) and their
# library dependencies into .gpu/debs, and copies the shared test data into .gpu/data.
# scripts/gpu/build.sh unpacks them on the GPU machine. The C library, the C++ runtime and the
# compiler are left out: the GPU machine has its own, newer ones.
set -euo pipefail
cd "$(dirname "$0")/../.."

readonly OUT_DIR=.gpu
readonly WANTED=(
  libgrpc++-dev protobuf-compiler protobuf-compiler-grpc libprotobuf-dev libabsl-dev
  libspdlog-dev libfmt-dev libyaml-cpp-dev nlohmann-json3-dev libsqlite3-dev
  prometheus-cpp-dev libsentencepiece-dev libgtest-dev libgmock-dev libbenchmark-dev
  libicu-dev pkg-config
)
# Present on any glibc system, or only needed by libraries we never link (curl's TLS stack,
# used by prometheus-cpp's push client alone).
readonly SKIP_REGEX='^(libc6|libc6-dev|libc-dev-bin|gcc-[0-9]+-base|libgcc-s1|libstdc\+\+6|linux-libc-dev|libcrypt.*|libnsl.*|libtirpc.*|rpcsvc-proto|catch2|icu-devtools|libbrotli1|libcom-err2|libgssapi-krb5-2|libk5crypto3|libkeyutils1|libkrb5.*|libldap.*|libnghttp2-14|libpsl5|librtmp1|libsasl2.*|libssh2-1|libgnutls30|libhogweed6|libnettle8|libgmp10|libidn2-0|libp11-kit0|libtasn1-6|libunistring2|libffi8|libdb5.3)$'

packages=$(apt-cache depends --recurse --no-recommends --no-suggests --no-conflicts \
             --no-breaks --no-replaces --no-enhances "${WANTED[@]}" |
           grep -v '^[ <]' | sort -u | grep -Ev "$SKIP_REGEX")

mkdir -p "$OUT_DIR/debs"
rm -f "$OUT_DIR"/debs/*.deb
(cd "$OUT_DIR/debs" && apt-get download $packages >/dev/null)
echo "fetch-debs: $(ls "$OUT_DIR"/debs/*.deb | wc -l) packages," \
     "$(du -sh "$OUT_DIR/debs" | cut -f1) in $OUT_DIR/debs"

# The device machine receives the repository only, not ../shared beside it.
rm -rf "$OUT_DIR/data"
cp -r ../shared/data "$OUT_DIR/data"
echo "fetch-debs: test data copied to $OUT_DIR/data ($(du -sh "$OUT_DIR/data" | cut -f1))"
