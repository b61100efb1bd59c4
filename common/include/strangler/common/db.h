#pragma once

#include <cstddef>
#include <memory>
#include <string>

#include "strangler/common/result.h"

namespace soci {
class session;
class connection_pool;
}  // namespace soci

namespace strangler::common {

/// The database engines Strangler supports; both are linked in, never loaded at run time.
enum class DbBackend { kSqlite3, kPostgresql };

/// A parsed SOCI connection string such as "sqlite3://db=monolith.db" or
/// "postgresql://dbname=rideshare host=127.0.0.1 port=5432 user=app".
struct DbTarget {
  DbBackend backend = DbBackend::kSqlite3;
  std::string params;    ///< what the backend receives ("db=monolith.db", "dbname=... host=...")
  std::string original;  ///< the string as the user wrote it (for messages)

  /// "sqlite3" or "postgresql".
  std::string backendName() const;
};

/// Parses a connection string. Accepted forms:
///   sqlite3://db=FILE [timeout=S]   sqlite3://FILE   (FILE may be :memory:)
///   postgresql://KEY=VALUE ...      postgresql://user@host:port/db (a libpq URI)
Result<DbTarget> parseConnectionString(const std::string& text);

/// Opens `session` on `target` with the linked backend factory and applies per-connection
/// settings (SQLite: WAL journal, busy timeout, foreign keys).
void openSession(soci::session& session, const DbTarget& target);

/// A fixed-size pool of open sessions; lease one with `soci::session s(pool.pool());`.
class SessionPool {
 public:
  /// Opens `size` sessions on `target`; throws soci::soci_error when the database is unreachable.
  SessionPool(const DbTarget& target, std::size_t size);
  ~SessionPool();
  SessionPool(const SessionPool&) = delete;
  SessionPool& operator=(const SessionPool&) = delete;

  /// The underlying SOCI pool, for `soci::session lease(pool.pool())`.
  soci::connection_pool& pool() { return *pool_; }
  /// Which engine the sessions talk to (SQL dialect choices depend on it).
  DbBackend backend() const { return target_.backend; }
  const DbTarget& target() const { return target_; }

 private:
  DbTarget target_;
  std::unique_ptr<soci::connection_pool> pool_;
};

/// RAII transaction that rolls back unless committed. A write transaction on SQLite takes the
/// write lock up front (BEGIN IMMEDIATE) so that concurrent writers wait on the busy timeout
/// instead of failing on a read-to-write lock upgrade.
class Transaction {
 public:
  enum class Mode { kRead, kWrite };
  Transaction(soci::session& session, DbBackend backend, Mode mode);
  ~Transaction();
  Transaction(const Transaction&) = delete;
  Transaction& operator=(const Transaction&) = delete;

  /// Commits; after this the destructor does nothing.
  void commit();

 private:
  soci::session& session_;
  bool open_ = true;
};

}  // namespace strangler::common
