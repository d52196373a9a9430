#include "server/core/job_state.h"

#include <set>
#include <utility>

#include "gtest/gtest.h"

namespace quantd {
namespace {

using v1::JobState;

TEST(JobStateTest, ExactlyTheDesignedEdgesAreLegal) {
  const std::set<std::pair<JobState, JobState>> legal = {
      {v1::JOB_STATE_UNSPECIFIED, v1::JOB_STATE_QUEUED},
      {v1::JOB_STATE_QUEUED, v1::JOB_STATE_ASSIGNED},
      {v1::JOB_STATE_QUEUED, v1::JOB_STATE_CANCELLED},
      {v1::JOB_STATE_ASSIGNED, v1::JOB_STATE_RUNNING},
      {v1::JOB_STATE_ASSIGNED, v1::JOB_STATE_QUEUED},
      {v1::JOB_STATE_ASSIGNED, v1::JOB_STATE_CANCELLING},
      {v1::JOB_STATE_ASSIGNED, v1::JOB_STATE_FAILED},
      {v1::JOB_STATE_RUNNING, v1::JOB_STATE_SUCCEEDED},
      {v1::JOB_STATE_RUNNING, v1::JOB_STATE_FAILED},
      {v1::JOB_STATE_RUNNING, v1::JOB_STATE_CANCELLING},
      {v1::JOB_STATE_RUNNING, v1::JOB_STATE_QUEUED},
      {v1::JOB_STATE_CANCELLING, v1::JOB_STATE_CANCELLED},
      {v1::JOB_STATE_CANCELLING, v1::JOB_STATE_SUCCEEDED},
      {v1::JOB_STATE_CANCELLING, v1::JOB_STATE_FAILED},
  };
  for (int from = v1::JobState_MIN; from <= v1::JobState_MAX; ++from) {
    for (int to = v1::JobState_MIN; to <= v1::JobState_MAX; ++to) {
      const auto edge = std::make_pair(static_cast<JobState>(from), static_cast<JobState>(to));
      const absl::Status status = CheckTransition(edge.first, edge.second);
      if (legal.count(edge)) {
        EXPECT_TRUE(status.ok()) << StateName(edge.first) << " -> " << StateName(edge.second);
      } else {
        EXPECT_EQ(status.code(), absl::StatusCode::kFailedPrecondition)
            << StateName(edge.first) << " -> " << StateName(edge.second);
      }
    }
  }
}

TEST(JobStateTest, TerminalStatesHaveNoWayOut) {
  for (JobState terminal :
       {v1::JOB_STATE_SUCCEEDED, v1::JOB_STATE_FAILED, v1::JOB_STATE_CANCELLED}) {
    EXPECT_TRUE(IsTerminal(terminal));
    EXPECT_FALSE(IsActive(terminal));
    for (int to = v1::JobState_MIN; to <= v1::JobState_MAX; ++to) {
      EXPECT_FALSE(CheckTransition(terminal, static_cast<JobState>(to)).ok());
    }
  }
}

TEST(JobStateTest, ErrorNamesBothStates) {
  const absl::Status status = CheckTransition(v1::JOB_STATE_SUCCEEDED, v1::JOB_STATE_RUNNING);
  EXPECT_NE(status.message().find("SUCCEEDED -> RUNNING"), std::string::npos) << status;
}

}  // namespace
}  // namespace quantd
