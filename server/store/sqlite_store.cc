#include "server/store/sqlite_store.h"

#include <fcntl.h>
#include <sqlite3.h>
#include <sys/file.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <string>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_replace.h"
#include "absl/strings/str_split.h"
#include "proto/common/status_macros.h"
#include "server/core/time_util.h"
#include "server/store/statement.h"

namespace quantd {
namespace {

using store_internal::Exec;
using store_internal::OpenConnection;
using store_internal::SqliteError;
using store_internal::Statement;

// Schema migrations: entry i takes the database from version i to i + 1.
const char* const kMigrations[] = {
    // 0 -> 1: jobs, specs, events, idempotency keys.
    R"sql(
CREATE TABLE jobs (
  job_id TEXT PRIMARY KEY,
  owner TEXT NOT NULL,
  state INTEGER NOT NULL,
  priority INTEGER NOT NULL,
  submit_order INTEGER NOT NULL UNIQUE,
  worker_sequence INTEGER NOT NULL,
  device_ids TEXT NOT NULL,
  job BLOB NOT NULL);
CREATE TABLE specs (
  job_id TEXT PRIMARY KEY,
  spec BLOB NOT NULL);
CREATE TABLE events (
  job_id TEXT NOT NULL,
  sequence INTEGER NOT NULL,
  time_ns INTEGER NOT NULL,
  kind INTEGER NOT NULL,
  event BLOB NOT NULL,
  PRIMARY KEY (job_id, sequence)) WITHOUT ROWID;
CREATE TABLE idempotency_keys (
  owner TEXT NOT NULL,
  request_id TEXT NOT NULL,
  job_id TEXT NOT NULL,
  PRIMARY KEY (owner, request_id)) WITHOUT ROWID;
)sql",
    // 1 -> 2: the worker registry and an index for listing by owner and state.
    R"sql(
CREATE TABLE workers (
  worker_id TEXT PRIMARY KEY,
  hello BLOB NOT NULL,
  last_seen_ns INTEGER NOT NULL,
  connected INTEGER NOT NULL);
CREATE INDEX jobs_by_owner_state ON jobs (owner, state);
)sql",
};
static_assert(sizeof(kMigrations) / sizeof(kMigrations[0]) == SqliteStore::kSchemaVersion,
              "one migration per schema version");

std::string RepairAdvice(const std::string& path) {
  return absl::StrCat("Restore a backup, or copy what SQLite can still read into a new file: ",
                      "sqlite3 ", path, " .recover | sqlite3 NEW.db, and start with --db=NEW.db");
}

}  // namespace

std::string StoreFailureMessage(const absl::Status& status, const std::string& path) {
  if (absl::IsDataLoss(status)) {
    return absl::StrCat("store write failed, aborting: ", status.ToString(), ". The database ",
                        path, " is damaged and a restart will not repair it. ", RepairAdvice(path));
  }
  return absl::StrCat("store write failed, aborting so a restart recovers: ", status.ToString());
}

struct SqliteStore::Statements {
  Statement upsert_job;
  Statement insert_spec;
  Statement insert_event;
  Statement insert_key;
  Statement upsert_worker;
};

SqliteStore::Reader::~Reader() = default;

SqliteStore::SqliteStore(SqliteStoreOptions options) : options_(std::move(options)) {}

absl::StatusOr<std::unique_ptr<SqliteStore>> SqliteStore::Open(SqliteStoreOptions options) {
  if (options.path.empty() || options.path == ":memory:") {
    return absl::InvalidArgumentError("store path: a database file is required");
  }
  std::unique_ptr<SqliteStore> store(new SqliteStore(std::move(options)));
  RETURN_IF_ERROR(store->Lock());
  RETURN_IF_ERROR(store->OpenConnections());
  store->writer_thread_ = std::thread([raw = store.get()] { raw->WriterLoop(); });
  return store;
}

absl::Status SqliteStore::Lock() {
  const std::string lock_path = options_.path + ".lock";
  lock_fd_ = ::open(lock_path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  if (lock_fd_ < 0) {
    return absl::FailedPreconditionError(
        absl::StrCat("store: cannot open ", lock_path, ": ", std::strerror(errno)));
  }
  if (::flock(lock_fd_, LOCK_EX | LOCK_NB) != 0) {
    const int error = errno;
    char owner[32] = {};
    const ssize_t n = ::pread(lock_fd_, owner, sizeof(owner) - 1, 0);
    std::string pid = n > 0 ? std::string(owner, n) : "";
    pid.erase(pid.find_last_not_of(" \n") + 1);
    if (error == EWOULDBLOCK) {
      return absl::FailedPreconditionError(absl::StrCat(
          "store: ", options_.path, " is in use by another quantd",
          pid.empty() ? "" : absl::StrCat(" (pid ", pid, ")"), "; it holds ", lock_path));
    }
    return absl::FailedPreconditionError(
        absl::StrCat("store: cannot lock ", lock_path, ": ", std::strerror(error)));
  }
  const std::string pid = absl::StrCat(::getpid(), "\n");
  if (::ftruncate(lock_fd_, 0) != 0 || ::pwrite(lock_fd_, pid.data(), pid.size(), 0) < 0) {
    // The pid is only for the message of a quantd that finds the file locked.
  }
  return absl::OkStatus();
}

absl::Status SqliteStore::OpenConnections() {
  ASSIGN_OR_RETURN(writer_, OpenConnection(options_.path, options_.synchronous_full));
  RETURN_IF_ERROR(Check());
  RETURN_IF_ERROR(Migrate());
  statements_ = std::make_unique<Statements>();
  RETURN_IF_ERROR(statements_->upsert_job.Prepare(writer_, R"sql(
INSERT INTO jobs (job_id, owner, state, priority, submit_order, worker_sequence, device_ids, job)
VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
ON CONFLICT (job_id) DO UPDATE SET state = ?3, priority = ?4, worker_sequence = ?6,
  device_ids = ?7, job = ?8)sql"));
  RETURN_IF_ERROR(statements_->insert_spec.Prepare(
      writer_, "INSERT OR REPLACE INTO specs (job_id, spec) VALUES (?1, ?2)"));
  RETURN_IF_ERROR(statements_->insert_event.Prepare(
      writer_,
      "INSERT INTO events (job_id, sequence, time_ns, kind, event) VALUES (?1, ?2, ?3, ?4, ?5)"));
  RETURN_IF_ERROR(statements_->insert_key.Prepare(
      writer_,
      "INSERT OR IGNORE INTO idempotency_keys (owner, request_id, job_id) VALUES (?1, ?2, ?3)"));
  RETURN_IF_ERROR(statements_->upsert_worker.Prepare(writer_, R"sql(
INSERT INTO workers (worker_id, hello, last_seen_ns, connected) VALUES (?1, ?2, ?3, ?4)
ON CONFLICT (worker_id) DO UPDATE SET hello = ?2, last_seen_ns = ?3, connected = ?4)sql"));
  const int readers = std::max(1, options_.reader_connections);
  for (int i = 0; i < readers; ++i) {
    auto reader = std::make_unique<Reader>();
    ASSIGN_OR_RETURN(sqlite3 * db, OpenConnection(options_.path, options_.synchronous_full));
    absl::MutexLock lock(&reader->mu);
    reader->db = db;
    reader->select_events = std::make_unique<Statement>();
    RETURN_IF_ERROR(reader->select_events->Prepare(
        db,
        "SELECT event FROM events WHERE job_id = ?1 AND sequence > ?2 ORDER BY sequence "
        "LIMIT ?3"));
    readers_.push_back(std::move(reader));
  }
  return absl::OkStatus();
}

absl::Status SqliteStore::Check() {
  Statement check;
  RETURN_IF_ERROR(check.Prepare(writer_, "PRAGMA quick_check(1)"));
  absl::Status status;
  std::string problem;
  if (check.Next(&status)) {
    problem = check.Text(0);
  } else {
    problem = status.ok() ? "no result" : std::string(status.message());
  }
  check.Reset();
  if (problem == "ok") return absl::OkStatus();
  // "*** in database main ***\nPage 11: ..." reads better on one line, without the header.
  problem = absl::StrReplaceAll(problem, {{"*** in database main ***\n", ""}, {"\n", "; "}});
  return absl::DataLossError(absl::StrCat(
      "store: the database ", options_.path, " is damaged (PRAGMA quick_check: ", problem,
      "); quantd does not start on it. ", RepairAdvice(options_.path)));
}

absl::Status SqliteStore::Migrate() {
  Statement version;
  RETURN_IF_ERROR(version.Prepare(writer_, "PRAGMA user_version"));
  absl::Status status;
  if (!version.Next(&status)) return status.ok() ? SqliteError(writer_, "user_version") : status;
  int current = static_cast<int>(version.Int(0));
  version.Reset();
  if (current > kSchemaVersion) {
    return absl::FailedPreconditionError(absl::StrCat("store: database schema version ", current,
                                                      " is newer than this quantd understands (",
                                                      kSchemaVersion, ")"));
  }
  for (; current < kSchemaVersion; ++current) {
    RETURN_IF_ERROR(Exec(writer_, "BEGIN IMMEDIATE"));
    absl::Status step = Exec(writer_, kMigrations[current]);
    if (step.ok()) {
      step = Exec(writer_, absl::StrCat("PRAGMA user_version = ", current + 1));
    }
    if (!step.ok()) {
      Exec(writer_, "ROLLBACK").IgnoreError();
      return step;
    }
    RETURN_IF_ERROR(Exec(writer_, "COMMIT"));
  }
  schema_version_ = current;
  return absl::OkStatus();
}

SqliteStore::~SqliteStore() {
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
  }
  if (writer_thread_.joinable()) writer_thread_.join();
  statements_.reset();
  for (auto& reader : readers_) {
    absl::MutexLock lock(&reader->mu);
    reader->select_events.reset();
    sqlite3_close(reader->db);
  }
  sqlite3_close(writer_);
  if (lock_fd_ >= 0) ::close(lock_fd_);  // releases the lock
}

void SqliteStore::Write(WriteBatch batch, Done done) {
  absl::MutexLock lock(&mu_);
  queue_.push_back(Pending{std::move(batch), std::move(done)});
}

void SqliteStore::WriterLoop() {
  while (true) {
    std::deque<Pending> group;
    {
      absl::MutexLock lock(&mu_);
      mu_.Await(absl::Condition(
          +[](SqliteStore* self) ABSL_EXCLUSIVE_LOCKS_REQUIRED(self->mu_) {
            return self->stopping_ || !self->queue_.empty();
          },
          this));
      if (queue_.empty()) return;  // stopping, nothing left
      group.swap(queue_);
    }
    const absl::Time start = absl::Now();
    std::vector<absl::Status> results(group.size());
    absl::Status status = ApplyGroup(group, 0, group.size());
    if (status.ok() || group.size() == 1) {
      for (auto& result : results) result = status;
    } else {
      // Isolate the failing batch: one transaction each.
      for (size_t i = 0; i < group.size(); ++i) results[i] = ApplyGroup(group, i, i + 1);
    }
    if (options_.on_commit) {
      int events = 0;
      for (const Pending& pending : group) events += static_cast<int>(pending.batch.events.size());
      options_.on_commit(absl::Now() - start, static_cast<int>(group.size()), events);
    }
    for (size_t i = 0; i < group.size(); ++i) {
      if (group[i].done) group[i].done(results[i]);
    }
  }
}

absl::Status SqliteStore::ApplyGroup(const std::deque<Pending>& group, size_t begin, size_t end) {
  bool any = false;
  for (size_t i = begin; i < end; ++i) any |= !group[i].batch.empty();
  if (!any) return absl::OkStatus();
  RETURN_IF_ERROR(Exec(writer_, "BEGIN IMMEDIATE"));
  for (size_t i = begin; i < end; ++i) {
    absl::Status status = ApplyBatch(group[i].batch);
    if (!status.ok()) {
      Exec(writer_, "ROLLBACK").IgnoreError();
      return status;
    }
  }
  absl::Status status = Exec(writer_, "COMMIT");
  if (!status.ok()) {
    Exec(writer_, "ROLLBACK").IgnoreError();
    return status;
  }
  ++commits_;
  return absl::OkStatus();
}

absl::Status SqliteStore::ApplyBatch(const WriteBatch& batch) {
  Statements& s = *statements_;
  for (const StoredJob& stored : batch.jobs) {
    v1::Job job = stored.job;
    job.clear_spec();
    job.clear_queue_position();
    job.clear_pending_reason();
    RETURN_IF_ERROR(s.upsert_job.Bind(1, job.job_id())
                        .Bind(2, job.owner())
                        .Bind(3, static_cast<int64_t>(job.state()))
                        .Bind(4, static_cast<int64_t>(stored.job.spec().priority()))
                        .Bind(5, stored.submit_order)
                        .Bind(6, stored.worker_sequence)
                        .Bind(7, absl::StrJoin(stored.device_ids, ","))
                        .BindBlob(8, job.SerializeAsString())
                        .Run());
    if (stored.is_new) {
      RETURN_IF_ERROR(s.insert_spec.Bind(1, job.job_id())
                          .BindBlob(2, stored.job.spec().SerializeAsString())
                          .Run());
    }
  }
  for (const v1::JobEvent& event : batch.events) {
    const int64_t time_ns = event.has_time() ? absl::ToUnixNanos(FromProtoTime(event.time())) : 0;
    RETURN_IF_ERROR(s.insert_event.Bind(1, event.job_id())
                        .Bind(2, event.sequence())
                        .Bind(3, time_ns)
                        .Bind(4, static_cast<int64_t>(event.kind_case()))
                        .BindBlob(5, event.SerializeAsString())
                        .Run());
  }
  for (const IdempotencyKey& key : batch.keys) {
    RETURN_IF_ERROR(
        s.insert_key.Bind(1, key.owner).Bind(2, key.request_id).Bind(3, key.job_id).Run());
  }
  for (const WorkerRecord& worker : batch.workers) {
    RETURN_IF_ERROR(s.upsert_worker.Bind(1, worker.worker_id)
                        .BindBlob(2, worker.hello.SerializeAsString())
                        .Bind(3, absl::ToUnixNanos(worker.last_seen))
                        .Bind(4, worker.connected ? 1 : 0)
                        .Run());
  }
  return absl::OkStatus();
}

absl::StatusOr<StoreSnapshot> SqliteStore::Load() {
  Reader& reader = *readers_[0];
  absl::MutexLock lock(&reader.mu);
  StoreSnapshot snapshot;
  absl::Status status;
  {
    Statement jobs;
    RETURN_IF_ERROR(jobs.Prepare(reader.db, R"sql(
SELECT j.job, s.spec, j.submit_order, j.worker_sequence, j.device_ids
FROM jobs j LEFT JOIN specs s ON s.job_id = j.job_id ORDER BY j.submit_order)sql"));
    while (jobs.Next(&status)) {
      StoredJob stored;
      if (!stored.job.ParseFromString(jobs.Text(0)) ||
          !stored.job.mutable_spec()->ParseFromString(jobs.Text(1))) {
        return absl::DataLossError("store: a job row does not parse");
      }
      stored.submit_order = jobs.Int(2);
      stored.worker_sequence = jobs.Int(3);
      const std::string devices = jobs.Text(4);
      if (!devices.empty()) stored.device_ids = absl::StrSplit(devices, ',');
      snapshot.jobs.push_back(std::move(stored));
    }
    RETURN_IF_ERROR(status);
  }
  {
    Statement keys;
    RETURN_IF_ERROR(
        keys.Prepare(reader.db, "SELECT owner, request_id, job_id FROM idempotency_keys"));
    while (keys.Next(&status)) {
      snapshot.keys.push_back({keys.Text(0), keys.Text(1), keys.Text(2)});
    }
    RETURN_IF_ERROR(status);
  }
  {
    Statement workers;
    RETURN_IF_ERROR(workers.Prepare(
        reader.db, "SELECT worker_id, hello, last_seen_ns, connected FROM workers"));
    while (workers.Next(&status)) {
      WorkerRecord record;
      record.worker_id = workers.Text(0);
      record.hello.ParseFromString(workers.Text(1));
      record.last_seen = absl::FromUnixNanos(workers.Int(2));
      record.connected = workers.Int(3) != 0;
      snapshot.workers.push_back(std::move(record));
    }
    RETURN_IF_ERROR(status);
  }
  return snapshot;
}

absl::StatusOr<std::vector<v1::JobEvent>> SqliteStore::ReadEvents(const std::string& job_id,
                                                                  int64_t after_sequence,
                                                                  int limit) {
  Reader& reader = *readers_[next_reader_++ % readers_.size()];
  absl::MutexLock lock(&reader.mu);
  Statement& select = *reader.select_events;
  select.Bind(1, job_id).Bind(2, after_sequence).Bind(3, static_cast<int64_t>(limit));
  std::vector<v1::JobEvent> events;
  absl::Status status;
  while (select.Next(&status)) {
    v1::JobEvent event;
    if (!event.ParseFromString(select.Text(0))) {
      select.Reset();
      return absl::DataLossError(absl::StrCat("store: event of ", job_id, " does not parse"));
    }
    events.push_back(std::move(event));
  }
  select.Reset();
  RETURN_IF_ERROR(status);
  return events;
}

}  // namespace quantd
