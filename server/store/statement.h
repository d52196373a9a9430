// Small RAII helpers over the SQLite C API used by SqliteStore.
//
// A Statement is prepared once and reused; Run()/Reset() put it back to its initial state.
// Not thread-safe: a Statement belongs to one connection, used by one thread at a time.
#ifndef QUANTD_SERVER_STORE_STATEMENT_H_
#define QUANTD_SERVER_STORE_STATEMENT_H_

#include <cstdint>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

struct sqlite3;
struct sqlite3_stmt;

namespace quantd::store_internal {

// SQLite's last error on `db` as "sqlite <db file>: <what>: <message>": DATA_LOSS when it
// is SQLITE_CORRUPT or SQLITE_NOTADB (a damaged database), INTERNAL otherwise.
absl::Status SqliteError(sqlite3* db, const std::string& what);

// Runs SQL that returns no rows. Errors as SqliteError's, "... <message> in: <sql>".
absl::Status Exec(sqlite3* db, const std::string& sql);

// Opens `path` read-write (created when missing) in WAL mode with a busy timeout.
absl::StatusOr<sqlite3*> OpenConnection(const std::string& path, bool synchronous_full);

class Statement {
 public:
  Statement() = default;
  Statement(const Statement&) = delete;
  Statement& operator=(const Statement&) = delete;
  ~Statement();

  absl::Status Prepare(sqlite3* db, const char* sql);
  Statement& Bind(int index, int64_t value);
  Statement& Bind(int index, const std::string& value);
  Statement& BindBlob(int index, const std::string& value);
  // Runs a statement that returns no rows, then resets it.
  absl::Status Run();
  // Steps to the next row: true on a row; false at the end or on error (then *status is
  // set). Call Reset() when done with the rows.
  bool Next(absl::Status* status);
  void Reset();
  int64_t Int(int column);
  // Text or blob column as bytes.
  std::string Text(int column);

 private:
  sqlite3* db_ = nullptr;
  sqlite3_stmt* stmt_ = nullptr;
};

}  // namespace quantd::store_internal

#endif  // QUANTD_SERVER_STORE_STATEMENT_H_
