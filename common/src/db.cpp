#include "strangler/common/db.h"

#include <soci/postgresql/soci-postgresql.h>
#include <soci/soci.h>
#include <soci/sqlite3/soci-sqlite3.h>

#include <iostream>

namespace strangler::common {
namespace {

bool startsWith(const std::string& text, const std::string& prefix) {
  return text.rfind(prefix, 0) == 0;
}

}  // namespace

std::string DbTarget::backendName() const {
  return backend == DbBackend::kSqlite3 ? "sqlite3" : "postgresql";
}

Result<DbTarget> parseConnectionString(const std::string& text) {
  DbTarget target;
  target.original = text;
  for (const char* prefix : {"sqlite3://", "sqlite://"}) {
    if (!startsWith(text, prefix)) continue;
    std::string rest = text.substr(std::string(prefix).size());
    if (rest.empty()) {
      return Result<DbTarget>::failure("invalid_connection_string",
                                       "'" + text + "' names no database file (sqlite3://db=FILE)");
    }
    // "sqlite3://monolith.db" is accepted as a shorthand for "sqlite3://db=monolith.db".
    target.backend = DbBackend::kSqlite3;
    target.params = rest.find('=') == std::string::npos ? "db=" + rest : rest;
    return target;
  }
  for (const char* prefix : {"postgresql://", "postgres://"}) {
    if (!startsWith(text, prefix)) continue;
    std::string rest = text.substr(std::string(prefix).size());
    target.backend = DbBackend::kPostgresql;
    // KEY=VALUE pairs go to libpq as they are; anything else is a libpq URI, which keeps its
    // scheme.
    const bool key_value =
        rest.find('=') != std::string::npos && rest.find('@') == std::string::npos;
    target.params = key_value ? rest : "postgresql://" + rest;
    return target;
  }
  return Result<DbTarget>::failure(
      "invalid_connection_string",
      "'" + text +
          "' is not a supported connection string (sqlite3://db=FILE or postgresql://...)");
}

void openSession(soci::session& session, const DbTarget& target) {
  if (target.backend == DbBackend::kSqlite3) {
    session.open(*soci::factory_sqlite3(), target.params);
    session << "PRAGMA busy_timeout = 10000";
    session << "PRAGMA foreign_keys = ON";
    // WAL lets readers proceed while one writer commits; ignored for :memory: databases.
    std::string mode;
    session << "PRAGMA journal_mode = WAL", soci::into(mode);
    session << "PRAGMA synchronous = NORMAL";
    return;
  }
  session.open(*soci::factory_postgresql(), target.params);
  // "relation … already exists, skipping" and the like are not worth a line on stderr.
  session << "SET client_min_messages = warning";
}

SessionPool::SessionPool(const DbTarget& target, std::size_t size)
    : target_(target), pool_(std::make_unique<soci::connection_pool>(size)) {
  for (std::size_t i = 0; i < size; ++i)
    openSession(pool_->at(i), target_);
}

SessionPool::~SessionPool() = default;

Transaction::Transaction(soci::session& session, DbBackend backend, Mode mode) : session_(session) {
  if (backend == DbBackend::kSqlite3 && mode == Mode::kWrite) {
    session_ << "BEGIN IMMEDIATE";
  } else {
    session_ << "BEGIN";
  }
}

Transaction::~Transaction() {
  if (!open_) return;
  try {
    session_ << "ROLLBACK";
  } catch (const std::exception& e) {
    // A failed rollback leaves nothing to undo here; the connection reports it on next use.
    std::cerr << "transaction rollback failed: " << e.what() << "\n";
  }
}

void Transaction::commit() {
  session_ << "COMMIT";
  open_ = false;
}

}  // namespace strangler::common
