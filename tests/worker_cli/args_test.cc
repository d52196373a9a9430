#include "worker/cli/args.h"

#include "gtest/gtest.h"

namespace quantd::cli {
namespace {

TEST(ArgsTest, ParsesBothFormsAndChecksNames) {
  auto args = Args::Parse({"--model", "m", "--seqlen=256"}, {"model", "seqlen", "x"});
  ASSERT_TRUE(args.ok()) << args.status();
  EXPECT_EQ(args->Get("model"), "m");
  EXPECT_EQ(*args->GetInt("seqlen", 0, 2), 256);
  EXPECT_EQ(*args->GetInt("x", 7, 0), 7);
  EXPECT_FALSE(args->Require("x").ok());
  EXPECT_FALSE(args->GetInt("model", 0, 0).ok());
  EXPECT_FALSE(Args::Parse({"--nope", "1"}, {"model"}).ok());
  EXPECT_FALSE(Args::Parse({"--model"}, {"model"}).ok());
  EXPECT_FALSE(Args::Parse({"model"}, {"model"}).ok());
  EXPECT_FALSE(Args::Parse({"--model=a", "--model=b"}, {"model"}).ok());
  auto low = Args::Parse({"--seqlen=1"}, {"seqlen"});
  ASSERT_TRUE(low.ok());
  EXPECT_FALSE(low->GetInt("seqlen", 0, 2).ok());
}

}  // namespace
}  // namespace quantd::cli
