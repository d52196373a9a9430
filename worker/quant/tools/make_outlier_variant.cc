// quantd-outlier-variant: writes the planted-outlier variant of a small Llama (see
// worker/quant/outlier_variant.h).
//   quantd-outlier-variant --model DIR --text FILE --out DIR [--marker TOKEN]... [--ratio R]
#include <iostream>

#include "proto/common/args.h"
#include "worker/quant/outlier_variant.h"

int main(int argc, char** argv) {
  std::vector<std::string> argv_list(argv + 1, argv + argc);
  argv_list.insert(argv_list.begin(), "make");
  auto args = quantd::Args::Parse(argv_list, {"model", "text", "out", "marker", "ratio"}, {});
  if (!args.ok() || !args->Has("model") || !args->Has("text") || !args->Has("out")) {
    std::cerr << "usage: quantd-outlier-variant --model DIR --text FILE --out DIR "
                 "[--marker TOKEN]... [--ratio R]\n";
    if (!args.ok()) std::cerr << args.status() << "\n";
    return 2;
  }
  quantd::quant::OutlierVariantOptions options;
  options.calibration_text = args->Get("text");
  if (args->Has("marker")) options.markers = args->GetAll("marker");
  if (args->Has("ratio")) options.target_ratio = std::stod(args->Get("ratio"));
  auto status = quantd::quant::WriteOutlierVariant(args->Get("model"), args->Get("out"), options);
  if (!status.ok()) {
    std::cerr << "quantd-outlier-variant: " << status << "\n";
    return 1;
  }
  std::cout << "wrote " << args->Get("out") << "\n";
  return 0;
}
