#pragma once
// SQLite's bulk reads and writes through its own API (row_io.h has the interfaces).

#include <string>
#include <vector>

#include "row_io.h"

namespace strangler::acl::sync::detail {

/// SQLite through its own API: SOCI's SQLite backend exchanges every value as text, which
/// costs more than the copy itself; this path reads and binds native types (and keeps the
/// stored type, so a text value in an integer column still reaches the translator as text).
class SqliteStatement {
 public:
  SqliteStatement(sqlite3* db, const std::string& sql) : db_(db) {
    if (sqlite3_prepare_v2(db, sql.c_str(), -1, &stmt_, nullptr) != SQLITE_OK) {
      throw soci::soci_error(std::string("sqlite3 prepare: ") + sqlite3_errmsg(db) + " in " + sql);
    }
  }
  ~SqliteStatement() { sqlite3_finalize(stmt_); }
  SqliteStatement(const SqliteStatement&) = delete;
  SqliteStatement& operator=(const SqliteStatement&) = delete;
  sqlite3_stmt* get() { return stmt_; }
  void check(int rc) {
    if (rc != SQLITE_OK && rc != SQLITE_ROW && rc != SQLITE_DONE)
      throw soci::soci_error(std::string("sqlite3: ") + sqlite3_errmsg(db_));
  }

 private:
  sqlite3* db_;
  sqlite3_stmt* stmt_ = nullptr;
};

inline sqlite3* nativeHandle(soci::session& sql) {
  return static_cast<soci::sqlite3_session_backend*>(sql.get_backend())->conn_;
}

class SqliteChunkSource : public ChunkSource {
 public:
  SqliteChunkSource(Side& side, std::size_t key_column, int64_t chunk)
      : side_(side),
        columns_(side.columns.size()),
        key_column_(key_column),
        statement_(nativeHandle(*side.sql), chunkQuery(side, chunk)) {}

  void next(int64_t after, Chunk& chunk) override {
    sqlite3_stmt* st = statement_.get();
    sqlite3_reset(st);
    sqlite3_bind_int64(st, 1, after);
    readRows(statement_, chunk);
  }

  void byKeys(const std::vector<int64_t>& keys, Chunk& chunk) override {
    chunk.columns.assign(columns_, {});
    chunk.keys.clear();
    if (keys.empty()) return;
    std::string where = side_.key + " IN (" + keyList(keys) + ")";
    if (!side_.constants.empty()) where += " AND " + side_.whereConstants();
    std::string columns;
    for (const auto& c : side_.columns)
      columns += (columns.empty() ? "" : ", ") + c;
    SqliteStatement statement(nativeHandle(*side_.sql),
                              "SELECT " + columns + " FROM " + side_.table + " WHERE " + where);
    readRows(statement, chunk);
  }

 private:
  void readRows(SqliteStatement& statement, Chunk& chunk) {
    sqlite3_stmt* st = statement.get();
    chunk.columns.assign(columns_, {});
    chunk.keys.clear();
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
      for (std::size_t c = 0; c < columns_; ++c) {
        const int i = static_cast<int>(c);
        switch (sqlite3_column_type(st, i)) {
          case SQLITE_INTEGER:
            chunk.columns[c].emplace_back(static_cast<int64_t>(sqlite3_column_int64(st, i)));
            break;
          case SQLITE_FLOAT:
            chunk.columns[c].emplace_back(sqlite3_column_double(st, i));
            break;
          case SQLITE_NULL:
            chunk.columns[c].emplace_back();
            break;
          default:
            chunk.columns[c].emplace_back(
                std::string(reinterpret_cast<const char*>(sqlite3_column_text(st, i)),
                            static_cast<std::size_t>(sqlite3_column_bytes(st, i))));
        }
      }
      chunk.keys.push_back(sqlite3_column_int64(st, static_cast<int>(key_column_)));
    }
    statement.check(rc);
  }

 public:
  static std::string chunkQuery(const Side& side, int64_t chunk) {
    std::string where = side.whereConstants();
    where += (where.empty() ? "" : " AND ") + side.key + " > ?";
    std::string list;
    for (const auto& c : side.columns)
      list += (list.empty() ? "" : ", ") + c;
    return "SELECT " + list + " FROM " + side.table + " WHERE " + where + " ORDER BY " + side.key +
           " LIMIT " + std::to_string(chunk);
  }

 private:
  Side& side_;
  std::size_t columns_;
  std::size_t key_column_;
  SqliteStatement statement_;
};

/// SQLite: prepared upserts of many rows each (a statement's own cost, and AUTOINCREMENT's
/// bookkeeping, are paid once per batch instead of once per row), the rest one row at a time.
class SqliteRowSink : public RowSink {
 public:
  SqliteRowSink(Side& side, const std::vector<std::string>& columns,
                const std::set<std::string>* updated = nullptr)
      : batch_rows_(batchRows(nativeHandle(*side.sql), columns.size())),
        batch_(nativeHandle(*side.sql), upsert(side, columns, updated, batch_rows_)),
        single_(nativeHandle(*side.sql), upsert(side, columns, updated, 1)) {}

  void write(RowTranslator::Columns& columns) override {
    const std::size_t n = columns.empty() ? 0 : columns.front().size();
    std::size_t r = 0;
    for (; r + batch_rows_ <= n; r += batch_rows_)
      run(batch_, columns, r, batch_rows_);
    for (; r < n; ++r)
      run(single_, columns, r, 1);
  }

 private:
  // 32 rows a statement, fewer when that many parameters would pass the connection's limit.
  static std::size_t batchRows(sqlite3* db, std::size_t columns) {
    const auto limit =
        static_cast<std::size_t>(sqlite3_limit(db, SQLITE_LIMIT_VARIABLE_NUMBER, -1));
    return std::clamp<std::size_t>(limit / std::max<std::size_t>(columns, 1), 1, 32);
  }

  static std::string upsert(const Side& side, const std::vector<std::string>& columns,
                            const std::set<std::string>* updated, std::size_t rows) {
    std::string names, row = "(";
    for (std::size_t i = 0; i < columns.size(); ++i) {
      names += (i ? ", " : "") + columns[i];
      row += i ? ", ?" : "?";
    }
    row += ")";
    std::string values;
    for (std::size_t r = 0; r < rows; ++r)
      values += (r ? ", " : "") + row;
    return "INSERT INTO " + side.table + " (" + names + ") VALUES " + values +
           onConflict(side, columns, updated);
  }

  static void run(SqliteStatement& statement, const RowTranslator::Columns& columns,
                  std::size_t first, std::size_t rows) {
    sqlite3_stmt* st = statement.get();
    int i = 1;
    for (std::size_t r = first; r < first + rows; ++r) {
      for (const auto& column : columns) {
        const Value& v = column[r];
        if (const auto* n64 = std::get_if<int64_t>(&v)) {
          sqlite3_bind_int64(st, i, *n64);
        } else if (const auto* d = std::get_if<double>(&v)) {
          sqlite3_bind_double(st, i, *d);
        } else if (const auto* text = std::get_if<std::string>(&v)) {
          // The value outlives the step, so SQLite need not copy it.
          sqlite3_bind_text(st, i, text->data(), static_cast<int>(text->size()), SQLITE_STATIC);
        } else {
          sqlite3_bind_null(st, i);
        }
        ++i;
      }
    }
    const int rc = sqlite3_step(st);
    sqlite3_reset(st);
    statement.check(rc);
  }

  std::size_t batch_rows_;
  SqliteStatement batch_;
  SqliteStatement single_;
};

}  // namespace strangler::acl::sync::detail
