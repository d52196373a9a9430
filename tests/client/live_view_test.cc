#include "client/quantctl/live_view.h"

#include <algorithm>
#include <sstream>

#include "client/quantctl/output.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace quantd::quantctl {
namespace {

using ::testing::HasSubstr;

TEST(LiveViewTest, SparklineSpansLowestToHighest) {
  EXPECT_EQ(LiveView::Sparkline({1, 2, 3, 4, 5, 6, 7, 8}, 10), "▁▂▃▄▅▆▇█");
  EXPECT_EQ(LiveView::Sparkline({3, 3}, 10), "▅▅");       // flat: middle
  EXPECT_EQ(LiveView::Sparkline({1, 8, 1, 8}, 2), "▁█");  // only the last `width` points
  EXPECT_EQ(LiveView::Sparkline({}, 10), "");
}

TEST(LiveViewTest, MetricsTablePutsVariantsSideBySide) {
  const std::string table = LiveView::MetricsTable({{"ppl/wiki/quantized", 6.2},
                                                    {"ppl/wiki/fp", 5.47},
                                                    {"ppl/wiki/rtn", 900.5},
                                                    {"prefix/count", 3}});
  EXPECT_THAT(table, HasSubstr("measure"));
  // fp before quantized before the baselines, on one row per dataset.
  const size_t fp = table.find("fp"), quantized = table.find("quantized"), rtn = table.find("rtn");
  EXPECT_LT(fp, quantized);
  EXPECT_LT(quantized, rtn);
  EXPECT_THAT(table, HasSubstr("ppl wiki        5.4700        6.2000      900.5000"));
  EXPECT_THAT(table, HasSubstr("prefix/count"));
}

TEST(LiveViewTest, MetricsTableAddsAccuraciesAndWidensLongVariantNames) {
  const std::string table = LiveView::MetricsTable({{"ppl/wiki/fp", 5.47},
                                                    {"ppl/wiki/quantized_before_finetune", 7.25},
                                                    {"acc/piqa/fp", 0.7812},
                                                    {"acc_norm/piqa/fp", 0.79}});
  EXPECT_EQ(table,
            "measure                  fp  quantized_before_finetune\n"
            "ppl wiki             5.4700                     7.2500\n"
            "acc piqa             78.12%                          -\n"
            "acc_norm piqa        79.00%                          -\n");
}

TEST(LiveViewTest, ShowsStateProgressLossAndFinalTable) {
  std::ostringstream out;
  LiveView view(out, "j-000007", 80);
  v1::JobEvent event;
  event.mutable_state_change()->set_to(v1::JOB_STATE_RUNNING);
  view.Update(event);
  v1::JobEvent progress;
  progress.mutable_progress()->set_fraction(0.5);
  progress.mutable_progress()->set_eta_seconds(125);
  view.Update(progress);
  v1::JobEvent loss;
  loss.mutable_loss()->set_phase(v1::PHASE_TRAIN_PREFIX);
  loss.mutable_loss()->set_block(-1);
  loss.mutable_loss()->set_step(3);
  loss.mutable_loss()->set_loss(0.25);
  (*loss.mutable_loss()->mutable_components())["outlier"] = 0.2;
  view.Update(loss);
  v1::JobEvent metric;
  metric.mutable_metric()->set_name("ppl/tiny/fp");
  metric.mutable_metric()->set_value(4.117);
  view.Update(metric);
  view.Finish();
  const std::string screen = out.str();
  EXPECT_THAT(screen, HasSubstr("RUNNING"));
  EXPECT_THAT(screen, HasSubstr(" 50.0%  eta 2m05s"));
  EXPECT_THAT(screen, HasSubstr("loss train_prefix step 3: 0.25  outlier 0.2"));
  EXPECT_THAT(screen, HasSubstr("4.1170"));
}

// Job names, reasons, log lines and metric names come from other users and from workers: none
// of their control characters reaches the terminal (an escape could retitle the window, clear
// the screen or fake output), in any text quantctl prints.
TEST(TerminalSafetyTest, TextFromUsersAndWorkersCannotDriveTheTerminal) {
  const std::string hostile =
      "\x1b]0;owned\x07\x1b[2J\x1b[Hfake\nline\xc2\x9b"
      "2J";
  auto safe = [](const std::string& text) {
    return text.find('\x1b') == std::string::npos && text.find('\x07') == std::string::npos &&
           text.find("\xc2\x9b") == std::string::npos;
  };
  v1::Job job;
  job.set_job_id("j-000001");
  job.set_state(v1::JOB_STATE_FAILED);
  job.mutable_spec()->mutable_model()->set_name(hostile);
  job.mutable_failure()->set_message(hostile);
  const std::string table = FormatJobTable({job});
  EXPECT_TRUE(safe(table)) << table;
  EXPECT_THAT(table, HasSubstr("\\x1b]0;owned\\x07\\x1b[2J"));
  EXPECT_EQ(std::count(table.begin(), table.end(), '\n'), 2);  // header and one row
  for (OutputFormat output : {OutputFormat::kJson, OutputFormat::kYaml}) {
    EXPECT_TRUE(safe(FormatMessage(job, output))) << FormatMessage(job, output);
  }

  v1::JobEvent log;
  log.mutable_log()->set_level("info");
  log.mutable_log()->set_message(hostile);
  const std::string line = FormatEventLine(log);
  EXPECT_TRUE(safe(line)) << line;
  EXPECT_EQ(line.find('\n'), std::string::npos);

  std::ostringstream screen;
  LiveView view(screen, hostile, 80);
  v1::JobEvent progress;
  progress.mutable_progress()->set_fraction(0.5);
  progress.mutable_progress()->set_detail(hostile);
  view.Update(progress);
  view.Update(log);
  v1::JobEvent metric;
  metric.mutable_metric()->set_name("ppl/" + hostile + "/fp");
  metric.mutable_metric()->set_value(5);
  view.Update(metric);
  view.Finish();
  // The view's own escapes (bold, cursor up, clear below) are the only ones on the screen.
  std::string own_escapes_removed = screen.str();
  for (const std::string own : {"\x1b[1m", "\x1b[0m", "\x1b[J"}) {
    for (size_t at; (at = own_escapes_removed.find(own)) != std::string::npos;) {
      own_escapes_removed.erase(at, own.size());
    }
  }
  for (size_t at; (at = own_escapes_removed.find("\x1b[")) != std::string::npos &&
                  at + 3 < own_escapes_removed.size() && own_escapes_removed[at + 3] == 'F';) {
    own_escapes_removed.erase(at, 4);  // "\x1b[NF": cursor up N lines (N < 10 here)
  }
  EXPECT_TRUE(safe(own_escapes_removed)) << own_escapes_removed;
}

}  // namespace
}  // namespace quantd::quantctl
