#include "worker/link/event_outbox.h"

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "google/protobuf/util/time_util.h"
#include "worker/runner/event_pipe.h"

namespace quantd::link {

EventOutbox::EventOutbox(size_t max_in_memory, std::string spill_dir)
    : max_in_memory_(max_in_memory), spill_dir_(std::move(spill_dir)) {}

std::string EventOutbox::SpillPath(const std::string& job_id) const {
  return spill_dir_ + "/" + job_id + ".events.spill";
}

void EventOutbox::StartAttempt(const std::string& job_id, int32_t attempt) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = queues_.find(job_id);
  if (it != queues_.end() && it->second.attempt != attempt) ForgetLocked(job_id);
  queues_[job_id].attempt = attempt;
}

std::optional<int32_t> EventOutbox::attempt(const std::string& job_id) const {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = queues_.find(job_id);
  return it == queues_.end() ? std::nullopt : it->second.attempt;
}

int64_t EventOutbox::Add(const std::string& job_id, const v1::JobEvent& given) {
  v1::JobEvent stamped;
  const bool stamp = !given.has_time();
  if (stamp) {
    stamped = given;
    *stamped.mutable_time() = google::protobuf::util::TimeUtil::GetCurrentTime();
  }
  const v1::JobEvent& event = stamp ? stamped : given;
  std::lock_guard<std::mutex> lock(mu_);
  JobQueue& queue = queues_[job_id];
  const int64_t sequence = ++queue.last;
  if (queue.spilled == 0 && in_memory_ < max_in_memory_) {
    queue.memory.push_back(event);
    ++in_memory_;
    return sequence;
  }
  std::error_code ignored;
  std::filesystem::create_directories(spill_dir_, ignored);
  std::string frame;
  runner::AppendFramedEvent(event, &frame);
  std::ofstream(SpillPath(job_id), std::ios::binary | std::ios::app) << frame;
  if (queue.spilled == 0) queue.spill_first = sequence;
  ++queue.spilled;
  return sequence;
}

std::vector<v1::JobEvent> EventOutbox::ReadSpillLocked(const std::string& job_id) const {
  std::ifstream in(SpillPath(job_id), std::ios::binary);
  std::stringstream bytes;
  bytes << in.rdbuf();
  const std::string data = bytes.str();
  runner::EventPipeReader reader;
  std::vector<v1::JobEvent> events;
  (void)reader.Feed(data.data(), data.size(), &events);
  return events;
}

void EventOutbox::RefillLocked(const std::string& job_id, JobQueue& queue) {
  if (!queue.memory.empty() || queue.spilled == 0) return;
  std::vector<v1::JobEvent> events = ReadSpillLocked(job_id);
  std::remove(SpillPath(job_id).c_str());
  const int64_t file_first = queue.spill_first;
  const int64_t first_kept = std::max(queue.acked + 1, file_first);  // skip acknowledged
  queue.spilled = 0;
  for (int64_t s = first_kept; s <= queue.last; ++s) {
    const size_t index = static_cast<size_t>(s - file_first);
    if (index >= events.size()) break;  // an unreadable spill file loses only its tail
    v1::JobEvent& event = events[index];
    if (queue.spilled == 0 && in_memory_ < max_in_memory_) {
      queue.memory.push_back(std::move(event));
      ++in_memory_;
      continue;
    }
    std::string frame;
    runner::AppendFramedEvent(event, &frame);
    std::ofstream(SpillPath(job_id), std::ios::binary | std::ios::app) << frame;
    if (queue.spilled == 0) queue.spill_first = s;
    ++queue.spilled;
  }
}

void EventOutbox::Ack(const std::string& job_id, int64_t worker_sequence) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = queues_.find(job_id);
  if (it == queues_.end()) return;
  JobQueue& queue = it->second;
  worker_sequence = std::min(worker_sequence, queue.last);
  while (queue.acked < worker_sequence) {
    if (!queue.memory.empty()) {
      queue.memory.pop_front();
      --in_memory_;
      ++queue.acked;
    } else {
      queue.acked = worker_sequence;  // acknowledged straight out of the spill file
    }
  }
  RefillLocked(job_id, queue);
}

std::vector<std::pair<int64_t, v1::JobEvent>> EventOutbox::Pending(const std::string& job_id,
                                                                   int64_t after, size_t max) {
  std::lock_guard<std::mutex> lock(mu_);
  std::vector<std::pair<int64_t, v1::JobEvent>> out;
  auto it = queues_.find(job_id);
  if (it == queues_.end()) return out;
  JobQueue& queue = it->second;
  after = std::max(after, queue.acked);
  int64_t sequence = queue.acked + 1;
  for (const auto& event : queue.memory) {
    if (out.size() >= max) return out;
    if (sequence > after) out.emplace_back(sequence, event);
    ++sequence;
  }
  if (queue.spilled > 0 && out.size() < max && after < queue.last) {
    const std::vector<v1::JobEvent> spilled = ReadSpillLocked(job_id);
    for (size_t i = 0; i < spilled.size() && out.size() < max; ++i) {
      const int64_t s = queue.spill_first + static_cast<int64_t>(i);
      if (s > after) out.emplace_back(s, spilled[i]);
    }
  }
  return out;
}

int64_t EventOutbox::acked(const std::string& job_id) const {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = queues_.find(job_id);
  return it == queues_.end() ? 0 : it->second.acked;
}

int64_t EventOutbox::last(const std::string& job_id) const {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = queues_.find(job_id);
  return it == queues_.end() ? 0 : it->second.last;
}

std::vector<std::string> EventOutbox::jobs() const {
  std::lock_guard<std::mutex> lock(mu_);
  std::vector<std::string> ids;
  for (const auto& [id, queue] : queues_) ids.push_back(id);
  return ids;
}

void EventOutbox::Forget(const std::string& job_id) {
  std::lock_guard<std::mutex> lock(mu_);
  ForgetLocked(job_id);
}

void EventOutbox::ForgetLocked(const std::string& job_id) {
  auto it = queues_.find(job_id);
  if (it == queues_.end()) return;
  in_memory_ -= it->second.memory.size();
  if (it->second.spilled > 0) std::remove(SpillPath(job_id).c_str());
  queues_.erase(it);
}

size_t EventOutbox::in_memory() const {
  std::lock_guard<std::mutex> lock(mu_);
  return in_memory_;
}

}  // namespace quantd::link
