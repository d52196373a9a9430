// User-facing error texts without LibTorch backtraces (proto/common/error_text.h).
#include "proto/common/error_text.h"

#include "absl/strings/cord.h"
#include "gtest/gtest.h"

namespace quantd {
namespace {

// The shape of c10::Error::what() in LibTorch 1.13 and 2.x.
constexpr char kTorchWhat[] =
    "llama forward pass failed: \"addmm_impl_cpu_\" not implemented for 'Half'\n"
    "Exception raised from operator() at ./aten/src/ATen/native/LinearAlgebra.cpp:1308 (most "
    "recent call first):\n"
    "frame #0: c10::Error::Error(c10::SourceLocation, std::string) + 0x9e (0x7f in libc10.so)\n"
    "frame #1: at::native::matmul(at::Tensor const&, at::Tensor const&) + 0x62 (0x7f in x.so)\n";

TEST(ErrorTextTest, CutsTheBacktraceAndKeepsTheMessage) {
  EXPECT_EQ(WithoutBacktrace(kTorchWhat),
            "llama forward pass failed: \"addmm_impl_cpu_\" not implemented for 'Half'");
  // Messages with several lines of their own keep them all.
  EXPECT_EQ(WithoutBacktrace("calibration failed:\nline two"), "calibration failed:\nline two");
  EXPECT_EQ(WithoutBacktrace(""), "");
}

TEST(ErrorTextTest, StatusKeepsItsCodeAndPayloads) {
  absl::Status status = absl::ResourceExhaustedError(kTorchWhat);
  status.SetPayload("quantd/reason", absl::Cord("oom"));
  const absl::Status cut = WithoutBacktrace(status);
  EXPECT_EQ(cut.code(), absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(cut.message(), WithoutBacktrace(kTorchWhat));
  ASSERT_TRUE(cut.GetPayload("quantd/reason").has_value());
  EXPECT_EQ(*cut.GetPayload("quantd/reason"), "oom");
  const absl::Status plain = absl::NotFoundError("model: no config.json");
  EXPECT_EQ(WithoutBacktrace(plain), plain);
}

}  // namespace
}  // namespace quantd
