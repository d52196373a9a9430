// The scheduler-link settings of a test worker (worker/link): one idle 80 GiB device, reconnects
// within 20–200 ms, heartbeats every 500 ms.
#ifndef QUANTD_TESTS_SERVER_TEST_WORKER_LINK_H_
#define QUANTD_TESTS_SERVER_TEST_WORKER_LINK_H_

#include <chrono>
#include <string>
#include <vector>

#include "worker/link/scheduler_link.h"

namespace quantd::testing {

inline link::LinkOptions TestWorkerLink(const std::string& scheduler_address,
                                        const std::string& worker_id,
                                        const std::string& token = "worker-token") {
  link::LinkOptions options;
  options.scheduler_address = scheduler_address;
  options.token = token;
  options.worker_id = worker_id;
  options.devices = [] {
    v1::Device device;
    device.set_id("cuda:0");
    device.set_total_memory_bytes(80LL << 30);
    device.set_free_memory_bytes(80LL << 30);
    return std::vector<v1::Device>{device};
  };
  options.min_backoff = std::chrono::milliseconds(20);
  options.max_backoff = std::chrono::milliseconds(200);
  options.heartbeat_interval = std::chrono::milliseconds(500);
  return options;
}

}  // namespace quantd::testing

#endif  // QUANTD_TESTS_SERVER_TEST_WORKER_LINK_H_
