#include "server/store/statement.h"

#include <sqlite3.h>

#include "absl/strings/str_cat.h"

namespace quantd::store_internal {

namespace {

// "sqlite <file>: " (the database file of `db`), or "sqlite: " when it has none.
std::string Prefix(sqlite3* db) {
  const char* file = db == nullptr ? nullptr : sqlite3_db_filename(db, "main");
  return file == nullptr || *file == '\0' ? std::string("sqlite: ")
                                          : absl::StrCat("sqlite ", file, ": ");
}

absl::Status ErrorFor(int code, std::string message) {
  const int primary = code & 0xff;
  if (primary == SQLITE_CORRUPT || primary == SQLITE_NOTADB) {
    return absl::DataLossError(std::move(message));
  }
  return absl::InternalError(std::move(message));
}

}  // namespace

absl::Status SqliteError(sqlite3* db, const std::string& what) {
  if (db == nullptr) return absl::InternalError(absl::StrCat("sqlite: ", what, ": out of memory"));
  return ErrorFor(sqlite3_errcode(db), absl::StrCat(Prefix(db), what, ": ", sqlite3_errmsg(db)));
}

absl::Status Exec(sqlite3* db, const std::string& sql) {
  char* message = nullptr;
  const int code = sqlite3_exec(db, sql.c_str(), nullptr, nullptr, &message);
  if (code != SQLITE_OK) {
    absl::Status status =
        ErrorFor(code, absl::StrCat(Prefix(db), message == nullptr ? "error" : message,
                                    " in: ", sql.substr(0, 60)));
    sqlite3_free(message);
    return status;
  }
  return absl::OkStatus();
}

absl::StatusOr<sqlite3*> OpenConnection(const std::string& path, bool synchronous_full) {
  sqlite3* db = nullptr;
  const int flags = SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX;
  if (sqlite3_open_v2(path.c_str(), &db, flags, nullptr) != SQLITE_OK) {
    absl::Status status = SqliteError(db, absl::StrCat("open ", path));
    sqlite3_close(db);
    return status;
  }
  sqlite3_busy_timeout(db, 5000);
  absl::Status status = Exec(db, absl::StrCat("PRAGMA journal_mode=WAL; PRAGMA synchronous=",
                                              synchronous_full ? "FULL" : "NORMAL", ";"));
  if (!status.ok()) {
    sqlite3_close(db);
    return status;
  }
  return db;
}

Statement::~Statement() { sqlite3_finalize(stmt_); }

absl::Status Statement::Prepare(sqlite3* db, const char* sql) {
  db_ = db;
  if (sqlite3_prepare_v3(db, sql, -1, SQLITE_PREPARE_PERSISTENT, &stmt_, nullptr) != SQLITE_OK) {
    return SqliteError(db, absl::StrCat("prepare ", sql));
  }
  return absl::OkStatus();
}

Statement& Statement::Bind(int index, int64_t value) {
  sqlite3_bind_int64(stmt_, index, value);
  return *this;
}

Statement& Statement::Bind(int index, const std::string& value) {
  sqlite3_bind_text(stmt_, index, value.data(), static_cast<int>(value.size()), SQLITE_TRANSIENT);
  return *this;
}

Statement& Statement::BindBlob(int index, const std::string& value) {
  sqlite3_bind_blob(stmt_, index, value.data(), static_cast<int>(value.size()), SQLITE_TRANSIENT);
  return *this;
}

absl::Status Statement::Run() {
  const int rc = sqlite3_step(stmt_);
  absl::Status status = rc == SQLITE_DONE ? absl::OkStatus() : SqliteError(db_, "step");
  Reset();
  return status;
}

bool Statement::Next(absl::Status* status) {
  const int rc = sqlite3_step(stmt_);
  if (rc == SQLITE_ROW) return true;
  if (rc != SQLITE_DONE) *status = SqliteError(db_, "step");
  return false;
}

void Statement::Reset() {
  sqlite3_reset(stmt_);
  sqlite3_clear_bindings(stmt_);
}

int64_t Statement::Int(int column) { return sqlite3_column_int64(stmt_, column); }

std::string Statement::Text(int column) {
  const void* data = sqlite3_column_blob(stmt_, column);
  const int size = sqlite3_column_bytes(stmt_, column);
  return data == nullptr ? std::string() : std::string(static_cast<const char*>(data), size);
}

}  // namespace quantd::store_internal
