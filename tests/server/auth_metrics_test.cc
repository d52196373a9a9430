// Token files and the Prometheus exposition, without a network.
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server/metrics/metrics.h"
#include "server/rpc/auth.h"

namespace quantd {
namespace {

using ::testing::HasSubstr;

TEST(TokenTableTest, ParsesRolesAndSkipsComments) {
  auto table = TokenTable::Parse(
      "# comment\n\n  t-alice alice user\nt-root\troot admin\nt-w workers worker\n");
  ASSERT_TRUE(table.ok()) << table.status();
  EXPECT_EQ(table->size(), 3u);
  ASSERT_NE(table->Find("t-alice"), nullptr);
  EXPECT_EQ(table->Find("t-alice")->name, "alice");
  EXPECT_EQ(table->Find("t-alice")->role, Role::kUser);
  EXPECT_EQ(table->Find("t-root")->role, Role::kAdmin);
  EXPECT_EQ(table->Find("t-w")->role, Role::kWorker);
  EXPECT_EQ(table->Find("t-nobody"), nullptr);
}

TEST(TokenTableTest, RejectsMalformedLinesNamingThem) {
  auto missing = TokenTable::Parse("ok a user\nonly-two fields\n");
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(missing.status().message()), HasSubstr("line 2"));
  auto role = TokenTable::Parse("t a superuser\n");
  EXPECT_THAT(std::string(role.status().message()), HasSubstr("superuser"));
  auto repeated = TokenTable::Parse("t a user\nt b user\n");
  EXPECT_THAT(std::string(repeated.status().message()), HasSubstr("repeated"));
  EXPECT_EQ(TokenTable::LoadFile("/nonexistent/tokens").status().code(),
            absl::StatusCode::kNotFound);
}

TEST(MetricsTest, ExposesCountersHistogramsAndScrapeTimeGauges) {
  Metrics metrics;
  metrics.OnSubmitted();
  metrics.OnSubmitted();
  metrics.OnAssigned(absl::Seconds(2));
  metrics.OnFinished(v1::JOB_STATE_SUCCEEDED, absl::Seconds(90));
  metrics.OnFinished(v1::JOB_STATE_CANCELLED, absl::ZeroDuration());
  metrics.OnEventsIngested(41);
  metrics.OnRequeued(/*stopped_by_worker=*/false);
  metrics.OnStaleWorkerMessage(WorkerMessageKind::kFinished);
  metrics.OnStaleWorkerMessage(WorkerMessageKind::kFinished);
  metrics.OnStaleWorkerMessage(WorkerMessageKind::kHello);
  metrics.OnStoreCommit(absl::Milliseconds(3), 2, 41);
  metrics.SetSnapshotSource([] {
    GaugeSnapshot snapshot;
    snapshot.scheduler.jobs_by_state[v1::JOB_STATE_QUEUED] = 3;
    snapshot.scheduler.workers_connected = 2;
    snapshot.scheduler.devices_total = 4;
    snapshot.scheduler.devices_busy = 1;
    snapshot.watchers = 7;
    return snapshot;
  });
  const std::string text = metrics.Text();
  EXPECT_THAT(text, HasSubstr("quantd_jobs_submitted_total 2"));
  EXPECT_THAT(text, HasSubstr("quantd_jobs_finished_total{outcome=\"succeeded\"} 1"));
  EXPECT_THAT(text, HasSubstr("quantd_jobs_finished_total{outcome=\"cancelled\"} 1"));
  EXPECT_THAT(text, HasSubstr("quantd_jobs_requeued_total{reason=\"lost\"} 1"));
  EXPECT_THAT(text, HasSubstr("quantd_jobs_requeued_total{reason=\"stopped\"} 0"));
  EXPECT_THAT(text, HasSubstr("quantd_events_ingested_total 41"));
  EXPECT_THAT(text, HasSubstr("quantd_stale_worker_messages_total{kind=\"finished\"} 2"));
  EXPECT_THAT(text, HasSubstr("quantd_stale_worker_messages_total{kind=\"hello\"} 1"));
  EXPECT_THAT(text, HasSubstr("quantd_stale_worker_messages_total{kind=\"events\"} 0"));
  EXPECT_THAT(text, HasSubstr("quantd_stale_worker_messages_total{kind=\"rejected\"} 0"));
  EXPECT_THAT(text, HasSubstr("quantd_job_queue_wait_seconds_count 1"));
  EXPECT_THAT(text, HasSubstr("quantd_job_run_seconds_count 1"));
  EXPECT_THAT(text, HasSubstr("quantd_job_run_seconds_sum 90"));
  EXPECT_THAT(text, HasSubstr("quantd_store_write_seconds_count 1"));
  EXPECT_THAT(text, HasSubstr("quantd_jobs{state=\"queued\"} 3"));
  EXPECT_THAT(text, HasSubstr("quantd_jobs{state=\"running\"} 0"));
  EXPECT_THAT(text, HasSubstr("quantd_workers_connected 2"));
  EXPECT_THAT(text, HasSubstr("quantd_devices{state=\"busy\"} 1"));
  EXPECT_THAT(text, HasSubstr("quantd_devices{state=\"free\"} 3"));
  EXPECT_THAT(text, HasSubstr("quantd_watchers 7"));
  EXPECT_THAT(text, ::testing::Not(HasSubstr("j-0")));  // no job ids as labels
}

}  // namespace
}  // namespace quantd
