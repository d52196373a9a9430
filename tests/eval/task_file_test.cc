#include "worker/eval/task_file.h"

#include <filesystem>
#include <fstream>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace quantd::eval {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

MultipleChoiceExample Parse(const std::string& line, std::string* layout) {
  layout->clear();
  auto example = ParseTaskLine(line, 1, layout);
  EXPECT_TRUE(example.ok()) << example.status();
  return example.ok() ? *example : MultipleChoiceExample{};
}

TEST(TaskFileTest, GenericKeepsTheTextAsWritten) {
  std::string layout;
  auto example =
      Parse(R"({"context": "The sky is", "choices": [" blue", " loud"], "label": 0})", &layout);
  EXPECT_EQ(layout, "generic");
  EXPECT_THAT(example.contexts, ElementsAre("The sky is", "The sky is"));
  EXPECT_THAT(example.continuations, ElementsAre(" blue", " loud"));
  EXPECT_THAT(example.choice_lengths, ElementsAre(5, 5));
  EXPECT_EQ(example.label, 0);
}

TEST(TaskFileTest, PiqaArcAndBoolqUseTheQuestionAnswerPrompt) {
  std::string layout;
  auto piqa = Parse(R"({"goal": "Keep bread fresh", "sol1": "Seal it in a bag.",)"
                    R"( "sol2": "Leave it in the sun.", "label": 0})",
                    &layout);
  EXPECT_EQ(layout, "piqa");
  EXPECT_EQ(piqa.contexts[1], "Question: Keep bread fresh\nAnswer:");
  EXPECT_THAT(piqa.continuations, ElementsAre(" Seal it in a bag.", " Leave it in the sun."));
  EXPECT_EQ(piqa.choice_lengths[0], 17);  // the choice without the space before it

  auto arc = Parse(R"({"question": "Which gas do plants take in?", "answerKey": "B",)"
                   R"( "choices": {"text": ["Oxygen", "Carbon dioxide", "Helium"],)"
                   R"( "label": ["A", "B", "C"]}})",
                   &layout);
  EXPECT_EQ(layout, "arc");
  EXPECT_EQ(arc.contexts[0], "Question: Which gas do plants take in?\nAnswer:");
  EXPECT_THAT(arc.continuations, ElementsAre(" Oxygen", " Carbon dioxide", " Helium"));
  EXPECT_EQ(arc.label, 1);

  auto boolq = Parse(R"({"passage": "Tea is brewed from leaves.",)"
                     R"( "question": "is tea made from leaves", "answer": true})",
                     &layout);
  EXPECT_EQ(layout, "boolq");
  EXPECT_EQ(boolq.contexts[0],
            "Tea is brewed from leaves.\nQuestion: is tea made from leaves?\nAnswer:");
  EXPECT_THAT(boolq.continuations, ElementsAre(" no", " yes"));
  EXPECT_EQ(boolq.label, 1);
  auto super_glue = Parse(R"({"passage": "p", "question": "q", "label": 0, "idx": 7})", &layout);
  EXPECT_EQ(super_glue.label, 0);
}

TEST(TaskFileTest, HellaswagIsCleanedAndCapitalised) {
  std::string layout;
  auto example = Parse(
      R"({"activity_label": "Baking", "ctx_a": "A man mixes flour and water.", "ctx_b": "he",)"
      R"( "endings": ["kneads the dough [title] on a board.", "[header] sings  loudly."],)"
      R"( "label": "1"})",
      &layout);
  EXPECT_EQ(layout, "hellaswag");
  EXPECT_EQ(example.contexts[0], "Baking: A man mixes flour and water. He");
  // Removing "[header]" leaves the space after it, as the harness's clean-up does too.
  EXPECT_THAT(example.continuations,
              ElementsAre(" kneads the dough. on a board.", "  sings loudly."));
  EXPECT_EQ(example.label, 1);  // a numeric string is read as its number
}

TEST(TaskFileTest, WinograndeScoresTheRestOfTheSentenceAfterEachOption) {
  std::string layout;
  auto example = Parse(R"({"sentence": "The cup fell off the shelf because _ was at the edge.",)"
                       R"( "option1": "the cup", "option2": "the shelf", "answer": "1"})",
                       &layout);
  EXPECT_EQ(layout, "winogrande");
  EXPECT_THAT(example.contexts, ElementsAre("The cup fell off the shelf because the cup",
                                            "The cup fell off the shelf because the shelf"));
  EXPECT_THAT(example.continuations, ElementsAre(" was at the edge.", " was at the edge."));
  EXPECT_EQ(example.label, 0);
}

TEST(TaskFileTest, BadLinesSayWhatIsWrong) {
  const struct {
    const char* line;
    const char* problem;
  } cases[] = {
      {"[1, 2]", "not a JSON object"},
      {"{\"context\": \"a\", \"choices\": [\" b\"]", "not a JSON object"},
      {R"({"question": "q"})", "matches no task layout"},
      {R"({"context": "a", "choices": [" b"], "label": 0})", "at least two choices"},
      {R"({"context": "a", "choices": [" b", " c"], "label": 2})", "choice 3 of 2"},
      {R"({"context": "a", "choices": [" b", 3], "label": 0})", "strings only"},
      {R"({"context": 5, "choices": [" b", " c"], "label": 0})", "\"context\" must be a string"},
      {R"({"context": "a", "choices": [" b", " c"], "label": "first"})", "must be an integer"},
      {R"({"context": "a", "choices": [" b", " c"], "label": 4294967296})", "out of range"},
      {R"({"context": "a", "choices": [" b", " c"], "label": -4294967296})", "out of range"},
      {R"({"context": "a", "choices": [" b", " c"], "label": 18446744073709551615})",
       "out of range"},
      {R"({"goal": "g", "sol1": "a", "sol2": "b"})", "\"label\" must be an integer"},
      {R"({"question": "q", "answerKey": "D", "choices": {"text": ["x", "y"],)"
       R"( "label": ["A", "B"]}})",
       "answerKey \"D\" is not among the choices"},
      {R"({"sentence": "no blank", "option1": "a", "option2": "b", "answer": "1"})", "no \"_\""},
      {R"({"passage": "p", "question": "q"})", "needs \"answer\""},
  };
  for (const auto& c : cases) {
    std::string layout;
    auto example = ParseTaskLine(c.line, 3, &layout);
    ASSERT_FALSE(example.ok()) << c.line;
    EXPECT_EQ(example.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(std::string(example.status().message()), HasSubstr("line 3: ")) << c.line;
    EXPECT_THAT(std::string(example.status().message()), HasSubstr(c.problem)) << c.line;
  }
}

class TaskFileReadTest : public ::testing::Test {
 protected:
  std::string Write(const std::string& text) {
    const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
    const std::string path = std::string(QUANTD_BINARY_DIR) + "/tests/eval/" + info->name() + "-" +
                             std::to_string(++files_) + ".jsonl";
    std::ofstream(path) << text;
    paths_.push_back(path);
    return path;
  }
  void TearDown() override {
    for (const auto& path : paths_) std::filesystem::remove(path);
  }
  int files_ = 0;
  std::vector<std::string> paths_;
};

TEST_F(TaskFileReadTest, ReadsEveryExampleAndSkipsBlankLines) {
  const std::string path = Write(R"({"context": "a", "choices": [" b", " c"], "label": 1})"
                                 "\n\n"
                                 R"({"context": "d", "choices": [" e", " f", " g"], "label": 2})"
                                 "\n");
  auto task = ReadTaskFile(path, "tiny");
  ASSERT_TRUE(task.ok()) << task.status();
  EXPECT_EQ(task->name, "tiny");
  EXPECT_EQ(task->layout, "generic");
  ASSERT_EQ(task->examples.size(), 2u);
  EXPECT_EQ(task->examples[1].continuations.size(), 3u);
}

TEST_F(TaskFileReadTest, ALimitKeepsTheFirstExamplesAndReadsNoFurther) {
  // The third line is broken: with a limit of 2 it is never read.
  const std::string path = Write(R"({"context": "a", "choices": [" b", " c"], "label": 1})"
                                 "\n\n"
                                 R"({"context": "d", "choices": [" e", " f"], "label": 0})"
                                 "\nnot json\n");
  auto limited = ReadTaskFile(path, "tiny", 2);
  ASSERT_TRUE(limited.ok()) << limited.status();
  ASSERT_EQ(limited->examples.size(), 2u);
  EXPECT_EQ(limited->examples[1].contexts[0], "d");
  EXPECT_EQ(ReadTaskFile(path, "tiny", 0).status().code(), absl::StatusCode::kInvalidArgument);
}

TEST_F(TaskFileReadTest, FileErrorsNameTheTaskFileAndLine) {
  auto missing = ReadTaskFile("/nonexistent/piqa.jsonl", "piqa");
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(std::string(missing.status().message()), HasSubstr("/nonexistent/piqa.jsonl"));

  auto empty = ReadTaskFile(Write("\n  \n"), "empty");
  EXPECT_EQ(empty.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(empty.status().message()), HasSubstr("has no examples"));

  const std::string mixed_path = Write(R"({"context": "a", "choices": [" b", " c"], "label": 1})"
                                       "\n"
                                       R"({"goal": "g", "sol1": "a", "sol2": "b", "label": 0})"
                                       "\n");
  auto mixed = ReadTaskFile(mixed_path, "mixed");
  EXPECT_EQ(mixed.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(mixed.status().message()),
              HasSubstr("task mixed: " + mixed_path + " line 2: is a piqa example in a generic"));
}

}  // namespace
}  // namespace quantd::eval
