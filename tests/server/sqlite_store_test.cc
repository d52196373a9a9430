// SqliteStore on real files: schema, group commit, reopening, recovery through the scheduler.
#include "server/store/sqlite_store.h"

#include <sqlite3.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <memory>

#include "absl/synchronization/blocking_counter.h"
#include "absl/synchronization/notification.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server/core/scheduler.h"
#include "server/store/statement.h"
#include "tests/server/fakes.h"

namespace quantd {
namespace {

using ::testing::HasSubstr;

class SqliteStoreTest : public ::testing::Test {
 protected:
  SqliteStoreTest() {
    path_ = ::testing::TempDir() + "/quantd_store_" + std::to_string(getpid()) + "_" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name() + ".db";
    Remove();
  }
  ~SqliteStoreTest() override { Remove(); }
  void Remove() {
    for (const char* suffix : {"", "-wal", "-shm", ".lock"}) std::remove((path_ + suffix).c_str());
  }
  std::unique_ptr<SqliteStore> Open() {
    SqliteStoreOptions options;
    options.path = path_;
    auto store = SqliteStore::Open(options);
    EXPECT_TRUE(store.ok()) << store.status();
    return store.ok() ? std::move(*store) : nullptr;
  }
  static absl::Status WriteAndWait(JobStore& store, WriteBatch batch) {
    absl::Notification done;
    absl::Status result;
    store.Write(std::move(batch), [&](absl::Status status) {
      result = status;
      done.Notify();
    });
    done.WaitForNotification();
    return result;
  }
  static v1::JobEvent Event(const std::string& job_id, int64_t sequence) {
    v1::JobEvent event;
    event.set_job_id(job_id);
    event.set_sequence(sequence);
    event.mutable_time()->set_seconds(1700000000 + sequence);
    event.mutable_loss()->set_loss(1.0 / sequence);
    return event;
  }

  std::string path_;
};

TEST_F(SqliteStoreTest, WritesSurviveReopening) {
  {
    auto store = Open();
    ASSERT_NE(store, nullptr);
    EXPECT_EQ(store->schema_version(), SqliteStore::kSchemaVersion);
    WriteBatch batch;
    StoredJob job;
    job.job.set_job_id("j-000001");
    job.job.set_owner("alice");
    job.job.set_state(v1::JOB_STATE_RUNNING);
    job.job.mutable_spec()->mutable_model()->set_path("/models/tiny");
    job.job.mutable_spec()->set_priority(3);
    job.submit_order = 1;
    job.worker_sequence = 7;
    job.device_ids = {"cuda:0", "cuda:1"};
    job.is_new = true;
    batch.jobs.push_back(job);
    for (int i = 1; i <= 10; ++i) batch.events.push_back(Event("j-000001", i));
    batch.keys.push_back({"alice", "req-1", "j-000001"});
    WorkerRecord worker;
    worker.worker_id = "w1";
    worker.hello.set_hostname("node1");
    worker.last_seen = absl::FromUnixSeconds(1700000000);
    worker.connected = true;
    batch.workers.push_back(worker);
    ASSERT_TRUE(WriteAndWait(*store, std::move(batch)).ok());
    // A later update of the job keeps its spec.
    WriteBatch update;
    job.is_new = false;
    job.job.set_state(v1::JOB_STATE_SUCCEEDED);
    update.jobs.push_back(job);
    ASSERT_TRUE(WriteAndWait(*store, std::move(update)).ok());
  }
  auto store = Open();
  ASSERT_NE(store, nullptr);
  auto snapshot = store->Load();
  ASSERT_TRUE(snapshot.ok()) << snapshot.status();
  ASSERT_EQ(snapshot->jobs.size(), 1u);
  const StoredJob& job = snapshot->jobs[0];
  EXPECT_EQ(job.job.state(), v1::JOB_STATE_SUCCEEDED);
  EXPECT_EQ(job.job.spec().model().path(), "/models/tiny");
  EXPECT_EQ(job.job.spec().priority(), 3);
  EXPECT_EQ(job.worker_sequence, 7);
  EXPECT_EQ(job.device_ids, (std::vector<std::string>{"cuda:0", "cuda:1"}));
  ASSERT_EQ(snapshot->keys.size(), 1u);
  EXPECT_EQ(snapshot->keys[0].request_id, "req-1");
  ASSERT_EQ(snapshot->workers.size(), 1u);
  EXPECT_EQ(snapshot->workers[0].hello.hostname(), "node1");

  auto events = store->ReadEvents("j-000001", 4, 3);
  ASSERT_TRUE(events.ok());
  ASSERT_EQ(events->size(), 3u);
  EXPECT_EQ((*events)[0].sequence(), 5);
  EXPECT_EQ((*events)[2].sequence(), 7);
  EXPECT_TRUE(store->ReadEvents("j-000001", 10, 100)->empty());
  EXPECT_TRUE(store->ReadEvents("nope", 0, 100)->empty());
}

TEST_F(SqliteStoreTest, GroupCommitKeepsOrderAndSharesTransactions) {
  auto store = Open();
  ASSERT_NE(store, nullptr);
  constexpr int kBatches = 2000;
  absl::BlockingCounter remaining(kBatches);
  std::vector<int> order;
  absl::Mutex mu;
  for (int i = 0; i < kBatches; ++i) {
    WriteBatch batch;
    batch.events.push_back(Event("j-1", i + 1));
    store->Write(std::move(batch), [&, i](absl::Status status) {
      EXPECT_TRUE(status.ok()) << status;
      {
        absl::MutexLock lock(&mu);
        order.push_back(i);
      }
      remaining.DecrementCount();
    });
  }
  remaining.Wait();
  for (int i = 0; i < kBatches; ++i) ASSERT_EQ(order[i], i);
  EXPECT_LT(store->commits(), kBatches) << "batches were not grouped";
  EXPECT_EQ(store->ReadEvents("j-1", 0, kBatches + 1)->size(), static_cast<size_t>(kBatches));
}

TEST_F(SqliteStoreTest, FailingBatchDoesNotTakeOthersDown) {
  auto store = Open();
  ASSERT_NE(store, nullptr);
  WriteBatch first;
  first.events.push_back(Event("j-1", 1));
  ASSERT_TRUE(WriteAndWait(*store, std::move(first)).ok());
  absl::BlockingCounter remaining(3);
  std::vector<absl::Status> results(3);
  for (int i = 0; i < 3; ++i) {
    WriteBatch batch;
    batch.events.push_back(Event("j-1", i == 1 ? 1 : 2 + i));  // i == 1 repeats sequence 1
    store->Write(std::move(batch), [&, i](absl::Status status) {
      results[i] = status;
      remaining.DecrementCount();
    });
  }
  remaining.Wait();
  EXPECT_TRUE(results[0].ok());
  EXPECT_FALSE(results[1].ok());
  EXPECT_TRUE(results[2].ok());
  EXPECT_EQ(store->ReadEvents("j-1", 0, 10)->size(), 3u);
}

TEST_F(SqliteStoreTest, RefusesNewerSchema) {
  Open().reset();
  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open(path_.c_str(), &db), SQLITE_OK);
  ASSERT_EQ(sqlite3_exec(db, "PRAGMA user_version = 99", nullptr, nullptr, nullptr), SQLITE_OK);
  sqlite3_close(db);
  SqliteStoreOptions options;
  options.path = path_;
  auto store = SqliteStore::Open(options);
  EXPECT_EQ(store.status().code(), absl::StatusCode::kFailedPrecondition);
}

// Writes a store with `jobs` jobs (owners and states for the jobs_by_owner_state index) of
// `events_per_job` events each, closes it, and overwrites the index's root page with
// garbage, as `dd if=/dev/urandom of=DB bs=4096 seek=N count=1 conv=notrunc` would.
void WriteAndDamage(const std::string& path, int jobs, int events_per_job) {
  {
    SqliteStoreOptions options;
    options.path = path;
    auto store = SqliteStore::Open(options);
    ASSERT_TRUE(store.ok()) << store.status();
    WriteBatch batch;
    for (int i = 1; i <= jobs; ++i) {
      StoredJob job;
      job.job.set_job_id("j-" + std::to_string(i));
      job.job.set_owner(i % 2 == 0 ? "alice" : "bob");
      job.job.set_state(v1::JOB_STATE_QUEUED);
      job.submit_order = i;
      job.is_new = true;
      batch.jobs.push_back(job);
      for (int e = 1; e <= events_per_job; ++e) {
        v1::JobEvent event;
        event.set_job_id(job.job.job_id());
        event.set_sequence(e);
        event.mutable_loss()->set_loss(1.0 / e);
        batch.events.push_back(event);
      }
    }
    absl::Notification done;
    (*store)->Write(std::move(batch), [&](absl::Status status) {
      EXPECT_TRUE(status.ok()) << status;
      done.Notify();
    });
    done.WaitForNotification();
  }  // the last connection checkpoints the WAL into the file
  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open(path.c_str(), &db), SQLITE_OK);
  sqlite3_stmt* stmt = nullptr;
  ASSERT_EQ(sqlite3_prepare_v2(db,
                               "SELECT rootpage, (SELECT page_size FROM pragma_page_size) FROM "
                               "sqlite_master WHERE name = 'jobs_by_owner_state'",
                               -1, &stmt, nullptr),
            SQLITE_OK);
  ASSERT_EQ(sqlite3_step(stmt), SQLITE_ROW);
  const int64_t page = sqlite3_column_int64(stmt, 0);
  const int64_t page_size = sqlite3_column_int64(stmt, 1);
  sqlite3_finalize(stmt);
  sqlite3_close(db);
  ASSERT_GT(page, 1);
  std::FILE* file = std::fopen(path.c_str(), "r+b");
  ASSERT_NE(file, nullptr);
  ASSERT_EQ(std::fseek(file, static_cast<long>((page - 1) * page_size), SEEK_SET), 0);
  const std::string garbage(static_cast<size_t>(page_size), '\xab');
  ASSERT_EQ(std::fwrite(garbage.data(), 1, garbage.size(), file), garbage.size());
  std::fclose(file);
}

// A damaged index page: quantd used to start ("ready", reads work) and abort on the first
// write with "aborting so a restart recovers", on every restart.
TEST_F(SqliteStoreTest, DamagedDatabaseIsRefusedAtOpenWithTheWayOut) {
  ASSERT_NO_FATAL_FAILURE(WriteAndDamage(path_, 20, 5));
  SqliteStoreOptions options;
  options.path = path_;
  auto store = SqliteStore::Open(options);
  ASSERT_EQ(store.status().code(), absl::StatusCode::kDataLoss) << store.status();
  EXPECT_THAT(store.status().message(), HasSubstr("the database " + path_ + " is damaged"));
  EXPECT_THAT(store.status().message(), HasSubstr("PRAGMA quick_check: Page "));
  EXPECT_THAT(store.status().message(), HasSubstr("Restore a backup"));
  EXPECT_THAT(store.status().message(),
              HasSubstr("sqlite3 " + path_ + " .recover | sqlite3 NEW.db"));
}

TEST_F(SqliteStoreTest, FileThatIsNotADatabaseIsDataLossNamingTheFile) {
  std::FILE* file = std::fopen(path_.c_str(), "wb");
  ASSERT_NE(file, nullptr);
  const std::string garbage(8192, 'x');
  std::fwrite(garbage.data(), 1, garbage.size(), file);
  std::fclose(file);
  SqliteStoreOptions options;
  options.path = path_;
  auto store = SqliteStore::Open(options);
  ASSERT_EQ(store.status().code(), absl::StatusCode::kDataLoss) << store.status();
  // SQLite names the file by its absolute path.
  EXPECT_THAT(store.status().message(),
              HasSubstr("sqlite " + std::filesystem::absolute(path_).lexically_normal().string() +
                        ": file is not a database"));
}

// A write that finds the damage is DATA_LOSS, and the abort message does not promise that a
// restart recovers (a restart refuses the file).
TEST_F(SqliteStoreTest, WriteToDamagedDatabaseIsDataLossAndNoRestartIsPromised) {
  ASSERT_NO_FATAL_FAILURE(WriteAndDamage(path_, 20, 1));
  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open(path_.c_str(), &db), SQLITE_OK);
  const absl::Status status = store_internal::Exec(
      db,
      "INSERT INTO jobs (job_id, owner, state, priority, submit_order, worker_sequence, "
      "device_ids, job) VALUES ('j-new', 'carol', 1, 0, 1000, 0, '', x'')");
  sqlite3_close(db);
  ASSERT_EQ(status.code(), absl::StatusCode::kDataLoss) << status;
  EXPECT_THAT(status.message(),
              HasSubstr("sqlite " + std::filesystem::absolute(path_).lexically_normal().string()));
  const std::string message = StoreFailureMessage(status, path_);
  EXPECT_THAT(message, ::testing::Not(HasSubstr("restart recovers")));
  EXPECT_THAT(message, HasSubstr("a restart will not repair it"));
  EXPECT_THAT(message, HasSubstr("sqlite3 " + path_ + " .recover | sqlite3 NEW.db"));
  EXPECT_THAT(StoreFailureMessage(absl::InternalError("disk I/O error"), path_),
              HasSubstr("aborting so a restart recovers"));
}

// Two quantd on one database would both write job numbers and sequences from their own
// memory: the second one must not open it while the first has it.
TEST_F(SqliteStoreTest, SecondOpenOfTheSameFileIsRefusedWhileTheFirstIsOpen) {
  auto first = Open();
  ASSERT_NE(first, nullptr);
  SqliteStoreOptions options;
  options.path = path_;
  auto second = SqliteStore::Open(options);
  ASSERT_EQ(second.status().code(), absl::StatusCode::kFailedPrecondition) << second.status();
  EXPECT_THAT(second.status().message(), HasSubstr(path_));
  EXPECT_THAT(second.status().message(), HasSubstr("another quantd"));
  EXPECT_THAT(second.status().message(), HasSubstr("pid " + std::to_string(getpid())));
  first.reset();
  EXPECT_NE(Open(), nullptr) << "the lock outlived the store that held it";
}

TEST_F(SqliteStoreTest, SchedulerRecoversJobsAndEventsAfterReopen) {
  testing::FakeClock clock;
  EventBus bus;
  SchedulerOptions options;
  options.reattach_grace = absl::Seconds(30);
  std::string job_id;
  testing::RecordingLink link;
  {
    auto store = Open();
    Scheduler scheduler(options, &clock, store.get(), &bus);
    ASSERT_TRUE(scheduler.Recover().ok());
    v1::JobSpec spec;
    spec.mutable_model()->set_path("/models/tiny");
    spec.mutable_calibration()->set_dataset_path("/data/a.txt");
    absl::Notification submitted;
    scheduler.Submit(Caller{"alice", false}, spec, "req-9",
                     [&](absl::StatusOr<SubmitResult> result) {
                       ASSERT_TRUE(result.ok()) << result.status();
                       job_id = result->job.job_id();
                       submitted.Notify();
                     });
    submitted.WaitForNotification();
    v1::Hello hello;
    hello.set_worker_id("w1");
    hello.add_devices()->set_id("cuda:0");
    ASSERT_TRUE(scheduler.ConnectWorker(hello, &link).ok());
    v1::JobEvents events;
    events.set_job_id(job_id);
    events.set_first_worker_sequence(1);
    for (int i = 0; i < 20; ++i) events.add_events()->mutable_loss()->set_step(i);
    absl::Notification acked;
    scheduler.IngestEvents("w1", &link, events, [&](absl::StatusOr<int64_t> ack) {
      EXPECT_EQ(*ack, 20);
      acked.Notify();
    });
    acked.WaitForNotification();
  }  // the store commits what is queued and closes

  auto store = Open();
  Scheduler scheduler(options, &clock, store.get(), &bus);
  ASSERT_TRUE(scheduler.Recover().ok());
  auto job = scheduler.GetJob(Caller{"alice", false}, job_id);
  ASSERT_TRUE(job.ok());
  EXPECT_EQ(job->state(), v1::JOB_STATE_RUNNING);
  EXPECT_EQ(job->last_sequence(), 23);  // QUEUED, ASSIGNED, RUNNING + 20 losses
  auto events = store->ReadEvents(job_id, 0, 100);
  ASSERT_EQ(events->size(), 23u);
  for (size_t i = 0; i < events->size(); ++i) EXPECT_EQ((*events)[i].sequence(), int64_t(i + 1));

  // The same request_id still deduplicates after the restart.
  v1::JobSpec spec;
  spec.mutable_model()->set_path("/models/tiny");
  spec.mutable_calibration()->set_dataset_path("/data/a.txt");
  absl::Notification again;
  scheduler.Submit(Caller{"alice", false}, spec, "req-9", [&](absl::StatusOr<SubmitResult> result) {
    EXPECT_TRUE(result.ok() && result->deduplicated);
    again.Notify();
  });
  again.WaitForNotification();

  clock.Advance(absl::Seconds(31));
  scheduler.Tick();
  EXPECT_EQ(scheduler.GetJob(Caller{"alice", false}, job_id)->state(), v1::JOB_STATE_QUEUED);
}

}  // namespace
}  // namespace quantd
