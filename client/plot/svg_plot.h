// Report-quality SVG of a job's curves: one panel of loss curves (a line per training
// series: prefix training, each fine-tuned block, evaluation windows), one panel of
// perplexities (a bar per variant and dataset) and, when the job scored zero-shot tasks, one of
// accuracies (a bar per variant and task), with axes, tick labels, titles and legends.
#ifndef QUANTD_CLIENT_PLOT_SVG_PLOT_H_
#define QUANTD_CLIENT_PLOT_SVG_PLOT_H_

#include <string>

#include "quantd/v1/quantize_service.pb.h"

namespace quantd::plot {

// The whole SVG document. Works for any JobMetrics, including an empty one (the panels
// then say there is nothing to show).
std::string RenderJobSvg(const v1::JobMetrics& metrics, const std::string& title);

// "Nice" axis ticks (1, 2, 5 × 10^k steps) covering [low, high]; at least two values.
std::vector<double> NiceTicks(double low, double high, int target_count);

}  // namespace quantd::plot

#endif  // QUANTD_CLIENT_PLOT_SVG_PLOT_H_
