#include "proto/spec/eval_tasks.h"

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "proto/spec/validate.h"

namespace quantd {
namespace {

using ::testing::HasSubstr;
using ::testing::StartsWith;

TEST(ParseEvalTasksTest, NamedAndUnnamedEntries) {
  auto tasks = ParseEvalTasks(" piqa = /data/piqa/validation.jsonl ,/data/arc_easy.test.jsonl,x");
  ASSERT_TRUE(tasks.ok()) << tasks.status();
  ASSERT_EQ(tasks->size(), 3u);
  EXPECT_EQ((*tasks)[0].name, "piqa");
  EXPECT_EQ((*tasks)[0].path, "/data/piqa/validation.jsonl");
  EXPECT_EQ((*tasks)[1].name, "arc_easy");  // the file name up to its first dot
  EXPECT_EQ((*tasks)[1].path, "/data/arc_easy.test.jsonl");
  EXPECT_EQ((*tasks)[2].name, "x");
}

TEST(ParseEvalTasksTest, BlankIsNoTask) {
  auto tasks = ParseEvalTasks("  ");
  ASSERT_TRUE(tasks.ok());
  EXPECT_TRUE(tasks->empty());
}

TEST(ParseEvalTasksTest, BadEntriesNameTheEntry) {
  const struct {
    const char* text;
    const char* problem;
  } cases[] = {
      {"a.jsonl,", "entry 2 (\"\") is empty"},
      {"piqa=", "has no file path"},
      {"=a.jsonl", "has no task name"},
      {"my task=a.jsonl", "names are letters, digits"},
      {"a=x.jsonl,/d/a.jsonl", "repeats the task name \"a\""},
  };
  for (const auto& c : cases) {
    auto tasks = ParseEvalTasks(c.text);
    ASSERT_FALSE(tasks.ok()) << c.text;
    EXPECT_EQ(tasks.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(std::string(tasks.status().message()), StartsWith("eval.eval_tasks: ")) << c.text;
    EXPECT_THAT(std::string(tasks.status().message()), HasSubstr(c.problem)) << c.text;
  }
}

TEST(ParseEvalTasksTest, ValidateSpecChecksTheField) {
  v1::JobSpec spec;
  spec.mutable_model()->set_path("/models/llama");
  spec.mutable_calibration()->set_dataset_path("/data/wiki.txt");
  spec.mutable_eval()->set_eval_tasks("piqa=/d/piqa.jsonl,piqa=/d/other.jsonl");
  const absl::Status status = ValidateSpec(spec);
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(status.message()), StartsWith("eval.eval_tasks:"));
  spec.mutable_eval()->set_eval_tasks("piqa=/d/piqa.jsonl,/d/hellaswag.jsonl");
  EXPECT_TRUE(ValidateSpec(spec).ok());
  spec.mutable_eval()->set_eval_task_limit(-1);
  EXPECT_THAT(std::string(ValidateSpec(spec).message()),
              StartsWith("eval.eval_task_limit: must be >= 0"));
}

}  // namespace
}  // namespace quantd
