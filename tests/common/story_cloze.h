// Test helper: a zero-shot task that stories260K can actually solve, cut from the TinyStories
// validation text. Each example is the first two sentences of a story and four candidate third
// sentences: its own and those of three other stories. Written as a "generic" task file
// (worker/eval/task_file.h); the right choice's position rotates.
#ifndef QUANTD_TESTS_COMMON_STORY_CLOZE_H_
#define QUANTD_TESTS_COMMON_STORY_CLOZE_H_

#include <fstream>
#include <string>
#include <vector>

#include "nlohmann/json.hpp"

namespace quantd::testing {

// The sentences of one paragraph, split after ". ", "! " and "? ".
inline std::vector<std::string> Sentences(const std::string& paragraph) {
  std::vector<std::string> out;
  size_t start = 0;
  for (size_t i = 0; i + 1 < paragraph.size(); ++i) {
    const char c = paragraph[i];
    if ((c == '.' || c == '!' || c == '?') && paragraph[i + 1] == ' ') {
      out.push_back(paragraph.substr(start, i + 1 - start));
      start = i + 2;
    }
  }
  if (start < paragraph.size()) out.push_back(paragraph.substr(start));
  return out;
}

// Writes `examples` examples to `path` from the stories (blank-line separated paragraphs of
// at least three sentences) of `text_path`; returns how many it wrote (fewer when the text
// runs out of stories).
inline int WriteStoryCloze(const std::string& text_path, const std::string& path, int examples) {
  std::ifstream in(text_path);
  std::vector<std::vector<std::string>> stories;
  std::string line, paragraph;
  auto flush = [&] {
    auto sentences = Sentences(paragraph);
    if (sentences.size() >= 3) stories.push_back(sentences);
    paragraph.clear();
  };
  while (std::getline(in, line)) {
    if (line.find_first_not_of(" \t\r") == std::string::npos) {
      flush();
    } else {
      paragraph += (paragraph.empty() ? "" : " ") + line;
    }
  }
  flush();
  std::ofstream out(path);
  const int n = static_cast<int>(stories.size());
  int written = 0;
  for (int i = 0; i < n && written < examples; ++i, ++written) {
    const int label = written % 4;
    nlohmann::json example;
    example["context"] = stories[i][0] + " " + stories[i][1];
    std::vector<std::string> choices;
    const int others[] = {7, 13, 29};
    for (int other = 0, slot = 0; slot < 4; ++slot) {
      const int story = slot == label ? i : (i + others[other++]) % n;
      choices.push_back(" " + stories[story][2]);
    }
    example["choices"] = choices;
    example["label"] = label;
    out << example.dump() << "\n";
  }
  return written;
}

}  // namespace quantd::testing

#endif  // QUANTD_TESTS_COMMON_STORY_CLOZE_H_
