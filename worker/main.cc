// quantd-worker: dispatches to a sub-command.
#include <unistd.h>

#include <cstring>
#include <iostream>
#include <string>
#include <vector>

#include "proto/common/version.h"
#include "worker/cli/commands.h"
#ifdef QUANTD_WITH_SERVICES
#include "worker/service/commands.h"
#endif

namespace {

void Usage(std::ostream& out) {
  out << "usage: quantd-worker <command> [flags]\n"
         "commands:\n"
         "  generate     greedy decoding with a local model\n"
         "  perplexity   windowed perplexity of a local model or export on a text file\n"
         "  zero-shot    multiple-choice accuracy of a local model or export on task files\n"
         "  inspect      summary of an exported quantized model folder\n"
         "  version      print the version\n"
#ifdef QUANTD_WITH_SERVICES
      << quantd::service::ServiceCommandsUsage()
#endif
      << "Run a command with missing flags to see its flags.\n";
}

#ifdef QUANTD_WITH_SERVICES
// The path of this executable, to start job processes with.
std::string SelfPath(const char* argv0) {
  char buffer[4096];
  const ssize_t n = ::readlink("/proc/self/exe", buffer, sizeof(buffer) - 1);
  return n > 0 ? std::string(buffer, static_cast<size_t>(n)) : std::string(argv0);
}
#endif

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2 || std::strcmp(argv[1], "help") == 0 || std::strcmp(argv[1], "--help") == 0) {
    Usage(argc < 2 ? std::cerr : std::cout);
    return argc < 2 ? 2 : 0;
  }
  const std::string command = argv[1];
  const std::vector<std::string> args(argv + 2, argv + argc);
  if (command == "generate") return quantd::cli::RunGenerate(args, std::cout, std::cerr);
  if (command == "perplexity") return quantd::cli::RunPerplexity(args, std::cout, std::cerr);
  if (command == "zero-shot") return quantd::cli::RunZeroShot(args, std::cout, std::cerr);
  if (command == "inspect") return quantd::cli::RunInspect(args, std::cout, std::cerr);
#ifdef QUANTD_WITH_SERVICES
  if (command == "connect") return quantd::service::RunConnectCommand(SelfPath(argv[0]), args);
  if (command == "exec-job") return quantd::service::RunExecJobCommand(args);
  if (command == "run") return quantd::service::RunLocalCommand(args);
#endif
  if (command == "version") {
    std::cout << "quantd-worker " << quantd::VersionString() << "\n";
    return 0;
  }
  std::cerr << "quantd-worker: unknown command \"" << command << "\"\n";
  Usage(std::cerr);
  return 2;
}
