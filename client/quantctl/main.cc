// quantctl: the command line for quantd. See `quantctl help`.
#include <iostream>

#include "client/quantctl/commands.h"

int main(int argc, char** argv) {
  return quantd::quantctl::RunQuantctl({argv + 1, argv + argc}, std::cout, std::cerr);
}
