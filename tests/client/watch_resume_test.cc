// quantctl watch resumes after a dropped stream from the last sequence it printed. The
// server side here is scripted because the resumption protocol is what is under test.
#include <sstream>

#include "client/quantctl/commands.h"
#include "client/quantctl/exit_codes.h"
#include "gmock/gmock.h"
#include "grpcpp/server_builder.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "quantd/v1/quantize_service.grpc.pb.h"

namespace quantd::quantctl {
namespace {

// A progress event, or with `log` a log line "line <sequence>".
v1::JobEvent Event(int64_t sequence, bool log = false) {
  v1::JobEvent event;
  event.set_job_id("j-000001");
  event.set_sequence(sequence);
  if (log) {
    event.mutable_log()->set_level("info");
    event.mutable_log()->set_message("line " + std::to_string(sequence));
  } else {
    event.mutable_progress()->set_fraction(sequence / 10.0);
  }
  return event;
}

// Sends 1..3 then breaks the stream; on the next call sends what follows the requested
// sequence, ending with the terminal state change.
class ScriptedWatchService final : public v1::QuantizeService::Service {
 public:
  grpc::Status WatchJob(grpc::ServerContext*, const v1::WatchJobRequest* request,
                        grpc::ServerWriter<v1::JobEvent>* writer) override {
    requested_after_.push_back(request->after_sequence());
    if (requested_after_.size() == 1) {
      for (int64_t s = 1; s <= 3; ++s) writer->Write(Event(s, logs_));
      return grpc::Status(grpc::StatusCode::UNAVAILABLE, "scheduler restarting");
    }
    for (int64_t s = request->after_sequence() + 1; s <= 5; ++s) writer->Write(Event(s, logs_));
    v1::JobEvent done;
    done.set_job_id("j-000001");
    done.set_sequence(6);
    done.mutable_state_change()->set_from(v1::JOB_STATE_RUNNING);
    done.mutable_state_change()->set_to(terminal_);
    writer->Write(done);
    return grpc::Status::OK;
  }

  std::vector<int64_t> requested_after_;
  v1::JobState terminal_ = v1::JOB_STATE_SUCCEEDED;
  bool logs_ = false;  // log lines instead of progress
};

class WatchResumeTest : public ::testing::Test {
 protected:
  void SetUp() override {
    grpc::ServerBuilder builder;
    builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port_);
    builder.RegisterService(&service_);
    server_ = builder.BuildAndStart();
    ASSERT_NE(server_, nullptr);
  }
  void TearDown() override { server_->Shutdown(); }

  int Watch(std::string* out, std::string* err, const std::string& format) {
    std::ostringstream out_stream, err_stream;
    const int code = RunQuantctl(
        {"watch", "j-000001", "--addr", "127.0.0.1:" + std::to_string(port_), "--output", format},
        out_stream, err_stream);
    *out = out_stream.str();
    *err = err_stream.str();
    return code;
  }

  ScriptedWatchService service_;
  std::unique_ptr<grpc::Server> server_;
  int port_ = 0;
};

TEST_F(WatchResumeTest, ResumesWithoutGapOrDuplicate) {
  std::string out, err;
  ASSERT_EQ(Watch(&out, &err, "json"), kExitOk) << err;
  EXPECT_EQ(service_.requested_after_, (std::vector<int64_t>{0, 3}));
  std::istringstream lines(out);
  std::string line;
  int64_t expected = 1;
  while (std::getline(lines, line)) {
    EXPECT_EQ(nlohmann::json::parse(line)["sequence"], std::to_string(expected)) << line;
    ++expected;
  }
  EXPECT_EQ(expected, 7);
  EXPECT_THAT(err, ::testing::HasSubstr("resuming after #3"));
}

TEST_F(WatchResumeTest, ExitCodeFollowsTheJobOutcome) {
  std::string out, err;
  service_.terminal_ = v1::JOB_STATE_CANCELLED;
  EXPECT_EQ(Watch(&out, &err, "table"), kExitJobCancelled);
  EXPECT_THAT(out, ::testing::HasSubstr("#6 state RUNNING -> CANCELLED"));
  service_.requested_after_.clear();
  service_.terminal_ = v1::JOB_STATE_FAILED;
  EXPECT_EQ(Watch(&out, &err, "table"), kExitJobFailed);
}

TEST_F(WatchResumeTest, LogsFollowResumesWithoutGapOrDuplicate) {
  service_.logs_ = true;
  std::ostringstream out, err;
  ASSERT_EQ(
      RunQuantctl({"logs", "j-000001", "--follow", "--addr", "127.0.0.1:" + std::to_string(port_)},
                  out, err),
      kExitOk)
      << err.str();
  EXPECT_EQ(service_.requested_after_, (std::vector<int64_t>{0, 3}));
  EXPECT_EQ(out.str(), "info line 1\ninfo line 2\ninfo line 3\ninfo line 4\ninfo line 5\n");
  EXPECT_THAT(err.str(), ::testing::HasSubstr("resuming after #3"));
}

// ListJobs over `total` jobs, newest first, in pages as the scheduler serves them (a
// next_page_token only when more jobs match).
class ScriptedListService final : public v1::QuantizeService::Service {
 public:
  explicit ScriptedListService(int total) : total_(total) {}
  grpc::Status ListJobs(grpc::ServerContext*, const v1::ListJobsRequest* request,
                        v1::ListJobsResponse* response) override {
    int next = request->page_token().empty() ? 0 : std::stoi(request->page_token());
    const int size = request->page_size() > 0 ? request->page_size() : 50;
    while (next < total_ && response->jobs_size() < size) {
      response->add_jobs()->set_job_id("j-" + std::to_string(total_ - next++));
    }
    if (next < total_) response->set_next_page_token(std::to_string(next));
    return grpc::Status::OK;
  }

 private:
  const int total_;
};

// `quantctl list` stops at --limit (default 100) and says on stderr when more jobs match.
TEST(ListLimitTest, SaysWhenMoreJobsMatchThanShown) {
  for (const int total : {150, 100}) {
    ScriptedListService service(total);
    int port = 0;
    grpc::ServerBuilder builder;
    builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port);
    builder.RegisterService(&service);
    auto server = builder.BuildAndStart();
    ASSERT_NE(server, nullptr);
    std::ostringstream out, err;
    ASSERT_EQ(
        RunQuantctl({"list", "--addr", "127.0.0.1:" + std::to_string(port), "--output", "json"},
                    out, err),
        kExitOk)
        << err.str();
    const auto listed = nlohmann::json::parse(out.str());
    EXPECT_EQ(listed["jobs"].size(), 100u);
    if (total > 100) {
      EXPECT_THAT(err.str(), ::testing::HasSubstr("showing the first 100 jobs; more match"));
    } else {
      EXPECT_EQ(err.str(), "") << "a hint with nothing more to show";
    }
    server->Shutdown();
  }
}

}  // namespace
}  // namespace quantd::quantctl
