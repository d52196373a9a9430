#include <regex>

#include "client/plot/svg_plot.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace quantd::plot {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

int Count(const std::string& text, const std::string& needle) {
  int count = 0;
  for (size_t at = text.find(needle); at != std::string::npos; at = text.find(needle, at + 1)) {
    ++count;
  }
  return count;
}

TEST(SvgPlotTest, OneLinePerSeriesAndOneBarPerPerplexity) {
  v1::JobMetrics metrics;
  for (int step = 0; step < 20; ++step) {
    auto* prefix = metrics.add_loss();
    prefix->set_phase(v1::PHASE_TRAIN_PREFIX);
    prefix->set_block(-1);
    prefix->set_split("train");
    prefix->set_loss(5.0 / (step + 1));
    auto* block = metrics.add_loss();
    block->set_phase(v1::PHASE_FINETUNE);
    block->set_block(3);
    block->set_split("train");
    block->set_loss(0.1 + 0.01 * step);
  }
  auto add_metric = [&](const std::string& name, double value) {
    auto* metric = metrics.add_metrics();
    metric->set_name(name);
    metric->set_value(value);
  };
  add_metric("ppl/tinystories/fp", 4.117);
  add_metric("ppl/tinystories/quantized", 4.4);
  add_metric("ppl/wiki/fp", 99.43);
  add_metric("outlier_ratio/layer0/before", 6.5);  // not a perplexity: not drawn as a bar
  const std::string svg = RenderJobSvg(metrics, "quantd job j-000001");
  EXPECT_EQ(svg.rfind("<svg", 0), 0u);
  EXPECT_THAT(svg, HasSubstr("</svg>"));
  EXPECT_EQ(Count(svg, "<polyline"), 2);
  EXPECT_THAT(svg, HasSubstr("train_prefix train"));
  EXPECT_THAT(svg, HasSubstr("finetune block 3 train"));
  EXPECT_THAT(svg, HasSubstr(">4.117<"));
  EXPECT_THAT(svg, HasSubstr(">99.430<"));
  EXPECT_THAT(svg, HasSubstr(">quantized<"));
  EXPECT_THAT(svg, HasSubstr(">Loss curves<"));
  // Every polyline point lies inside the drawing.
  const std::regex point("([0-9.]+),([0-9.]+) ");
  for (auto it = std::sregex_iterator(svg.begin(), svg.end(), point); it != std::sregex_iterator();
       ++it) {
    EXPECT_LE(std::stod((*it)[1]), 960.0);
    EXPECT_LE(std::stod((*it)[2]), 880.0);
  }
}

TEST(SvgPlotTest, ZeroShotAccuraciesGetAThirdPanel) {
  v1::JobMetrics metrics;
  auto add_metric = [&](const std::string& name, double value) {
    auto* metric = metrics.add_metrics();
    metric->set_name(name);
    metric->set_value(value);
  };
  add_metric("ppl/wiki/fp", 5.47);
  const std::string without = RenderJobSvg(metrics, "job");
  EXPECT_THAT(without, Not(HasSubstr("Zero-shot accuracy")));
  add_metric("acc/piqa/fp", 0.7812);
  add_metric("acc/piqa/quantized", 0.7654);
  add_metric("acc_norm/piqa/fp", 0.79);  // acc only: one bar per variant and task
  const std::string with = RenderJobSvg(metrics, "job");
  EXPECT_THAT(with, HasSubstr(">Zero-shot accuracy (higher is better)<"));
  EXPECT_THAT(with, HasSubstr(">78.1<"));
  EXPECT_THAT(with, HasSubstr(">76.5<"));
  EXPECT_THAT(with, HasSubstr(">piqa<"));
  // The panel's frame, two bars and two legend keys.
  EXPECT_EQ(Count(with, "<rect x=") - Count(without, "<rect x="), 1 + 2 + 2);
  // One more panel's height.
  EXPECT_THAT(without, HasSubstr("height=\"" + std::to_string(2 * 380 + 60) + "\""));
  EXPECT_THAT(with, HasSubstr("height=\"" + std::to_string(3 * 380 + 60) + "\""));
}

TEST(SvgPlotTest, EmptyMetricsSayThereIsNothingToShow) {
  const std::string svg = RenderJobSvg(v1::JobMetrics(), "empty <job> & co");
  EXPECT_THAT(svg, HasSubstr("no loss points recorded"));
  EXPECT_THAT(svg, HasSubstr("no perplexities recorded"));
  EXPECT_THAT(svg, HasSubstr("empty &lt;job&gt; &amp; co"));  // escaped
}

TEST(NiceTicksTest, CoverTheRangeWithRoundSteps) {
  EXPECT_EQ(NiceTicks(0, 10, 6), (std::vector<double>{0, 2, 4, 6, 8, 10}));
  const auto ticks = NiceTicks(1.13, 1.77, 6);
  EXPECT_LE(ticks.front(), 1.13);
  EXPECT_GE(ticks.back(), 1.77);
  EXPECT_GE(NiceTicks(5, 5, 6).size(), 2u);  // a flat series still gets an axis
}

}  // namespace
}  // namespace quantd::plot
