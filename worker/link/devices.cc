#include "worker/link/devices.h"

#include <cstdio>
#include <fstream>
#include <set>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"

namespace quantd::link {
namespace {

int64_t MeminfoBytes(const std::string& key) {
  std::ifstream in("/proc/meminfo");
  std::string name;
  int64_t kib = 0;
  std::string unit;
  while (in >> name >> kib >> unit) {
    if (name == key + ":") return kib * 1024;
  }
  return 0;
}

}  // namespace

absl::StatusOr<std::vector<v1::Device>> ParseNvidiaSmi(const std::string& csv) {
  std::vector<v1::Device> devices;
  for (absl::string_view line : absl::StrSplit(csv, '\n', absl::SkipWhitespace())) {
    std::vector<std::string> fields;
    for (absl::string_view field : absl::StrSplit(line, ',')) {
      fields.emplace_back(absl::StripAsciiWhitespace(field));
    }
    int64_t total_mib = 0, free_mib = 0;
    if (fields.size() != 5 || !absl::SimpleAtoi(fields[2], &total_mib) ||
        !absl::SimpleAtoi(fields[3], &free_mib)) {
      return absl::InvalidArgumentError(absl::StrCat("unexpected nvidia-smi line: ", line));
    }
    v1::Device device;
    device.set_id("cuda:" + fields[0]);
    device.set_name(fields[1]);
    device.set_total_memory_bytes(total_mib << 20);
    device.set_free_memory_bytes(free_mib << 20);
    device.set_compute_capability(fields[4]);
    devices.push_back(device);
  }
  return devices;
}

v1::Device CpuDevice() {
  v1::Device device;
  device.set_id("cpu");
  std::ifstream cpuinfo("/proc/cpuinfo");
  std::string line;
  while (std::getline(cpuinfo, line)) {
    if (line.rfind("model name", 0) == 0) {
      const auto colon = line.find(':');
      if (colon != std::string::npos) {
        device.set_name(std::string(absl::StripAsciiWhitespace(line.substr(colon + 1))));
      }
      break;
    }
  }
  if (device.name().empty()) device.set_name("CPU");
  device.set_total_memory_bytes(MeminfoBytes("MemTotal"));
  device.set_free_memory_bytes(MeminfoBytes("MemAvailable"));
  return device;
}

absl::StatusOr<std::vector<v1::Device>> DiscoverDevices(const std::string& pinned) {
  std::string output;
  if (FILE* pipe = ::popen(
          "nvidia-smi --query-gpu=index,name,memory.total,memory.free,compute_cap "
          "--format=csv,noheader,nounits 2>/dev/null",
          "r")) {
    char buffer[4096];
    size_t n;
    while ((n = fread(buffer, 1, sizeof(buffer), pipe)) > 0) output.append(buffer, n);
    if (::pclose(pipe) != 0) output.clear();
  }
  auto gpus = ParseNvidiaSmi(output);
  if (!gpus.ok() || gpus->empty()) {
    if (!pinned.empty()) {
      return absl::NotFoundError("--devices " + pinned + " given but no GPU was found");
    }
    return std::vector<v1::Device>{CpuDevice()};
  }
  if (pinned.empty()) return gpus;
  std::vector<v1::Device> kept;
  std::set<std::string> seen;
  for (absl::string_view index : absl::StrSplit(pinned, ',', absl::SkipWhitespace())) {
    const std::string id = absl::StrCat("cuda:", absl::StripAsciiWhitespace(index));
    bool found = false;
    for (const auto& gpu : *gpus) {
      if (gpu.id() == id && seen.insert(id).second) {
        kept.push_back(gpu);
        found = true;
      }
    }
    if (!found) return absl::NotFoundError("no GPU " + id + " on this host");
  }
  return kept;
}

}  // namespace quantd::link
