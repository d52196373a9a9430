// SqliteStore: the JobStore on an embedded SQLite database in WAL mode.
//
// Tables (schema version kept in PRAGMA user_version, migrated forward on open): jobs,
// specs (written once per job), events (primary key job_id + per-job sequence),
// idempotency_keys, workers.
//
// Group commit: Write() queues the batch for one writer thread, which takes every queued
// batch, applies them in one transaction and then runs their callbacks in order. A batch
// that fails makes the writer retry the group's batches one transaction each, so only the
// failing batch sees the error. With `synchronous_full` each commit is fsynced (durable
// across power loss); otherwise WAL's NORMAL mode keeps it durable across process crashes.
//
// One process at a time: Open takes an exclusive lock (flock) on `<path>.lock`, a file beside
// the database holding the owner's pid, and keeps it until the store is destroyed; a second
// store on the same file, in this process or another, fails to open.
//
// Reads (Load, ReadEvents) use separate connections and run concurrently with the writer.
// Thread-safe. The destructor commits what is queued and joins the writer.
#ifndef QUANTD_SERVER_STORE_SQLITE_STORE_H_
#define QUANTD_SERVER_STORE_SQLITE_STORE_H_

#include <atomic>
#include <deque>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "server/core/job_store.h"

struct sqlite3;

namespace quantd {
namespace store_internal {
class Statement;
}  // namespace store_internal

struct SqliteStoreOptions {
  // Database file; created when missing. ":memory:" is not supported (readers need a file).
  std::string path;
  bool synchronous_full = true;
  // Connections for concurrent reads.
  int reader_connections = 4;
  // Called on the writer thread after each transaction: its latency, batches and events.
  std::function<void(absl::Duration latency, int batches, int events)> on_commit;
};

class SqliteStore : public JobStore {
 public:
  // The newest schema version this build writes.
  static constexpr int kSchemaVersion = 2;

  // Opens (creating or migrating) the database. FAILED_PRECONDITION when the file was
  // written by a newer schema or another store (another quantd) has it open, naming the file
  // and that quantd's pid. DATA_LOSS when the file is damaged: not a database, or `PRAGMA
  // quick_check` (run on every open: ~15 ms warm, ~160 ms cold for 100k events, 12 MB) finds a
  // problem; the message names the file, SQLite's first problem and the way out (a backup, or
  // `sqlite3 OLD.db .recover | sqlite3 NEW.db`). INTERNAL on other SQLite errors, with SQLite's
  // message and the file. A write that fails is DATA_LOSS when SQLite finds the database
  // damaged (SQLITE_CORRUPT, SQLITE_NOTADB), INTERNAL otherwise.
  static absl::StatusOr<std::unique_ptr<SqliteStore>> Open(SqliteStoreOptions options);
  ~SqliteStore() override;

  absl::StatusOr<StoreSnapshot> Load() override;
  void Write(WriteBatch batch, Done done) override;
  absl::StatusOr<std::vector<v1::JobEvent>> ReadEvents(const std::string& job_id,
                                                       int64_t after_sequence, int limit) override;

  int schema_version() const { return schema_version_; }
  // Transactions committed so far (for tests of group commit).
  int64_t commits() const { return commits_.load(); }

 private:
  struct Reader {
    absl::Mutex mu;
    sqlite3* db ABSL_GUARDED_BY(mu) = nullptr;
    std::unique_ptr<store_internal::Statement> select_events ABSL_GUARDED_BY(mu);
    ~Reader();
  };
  struct Pending {
    WriteBatch batch;
    Done done;
  };

  explicit SqliteStore(SqliteStoreOptions options);
  absl::Status Lock();
  absl::Status OpenConnections();
  absl::Status Check();  // PRAGMA quick_check
  absl::Status Migrate();
  void WriterLoop();
  absl::Status ApplyGroup(const std::deque<Pending>& group, size_t begin, size_t end);
  absl::Status ApplyBatch(const WriteBatch& batch);

  struct Statements;  // the writer's prepared statements

  const SqliteStoreOptions options_;
  int lock_fd_ = -1;  // holds the flock on <path>.lock
  sqlite3* writer_ = nullptr;
  std::unique_ptr<Statements>
      statements_;  // used by the writer thread only (and Open before it starts)
  std::vector<std::unique_ptr<Reader>> readers_;
  std::atomic<size_t> next_reader_{0};
  std::atomic<int64_t> commits_{0};
  int schema_version_ = 0;

  absl::Mutex mu_;
  std::deque<Pending> queue_ ABSL_GUARDED_BY(mu_);
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  std::thread writer_thread_;
};

// What quantd logs before it aborts on a failed store write (`status`, from Write) to the
// database file `path`: "aborting so a restart recovers" when a restart can (the in-memory
// state is ahead of the store and is rebuilt from it), but for DATA_LOSS (a damaged
// database, which a restart would refuse to open) the way out instead: a backup, or
// `sqlite3 <path> .recover | sqlite3 NEW.db`.
std::string StoreFailureMessage(const absl::Status& status, const std::string& path);

}  // namespace quantd

#endif  // QUANTD_SERVER_STORE_SQLITE_STORE_H_
