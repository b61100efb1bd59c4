#include "strangler/acl/sync_engine.h"

#include <soci/soci.h>
#include <soci/sqlite3/soci-sqlite3.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <ctime>
#include <limits>
#include <map>
#include <set>
#include <sstream>
#include <stdexcept>
#include <thread>

#include "strangler/common/db.h"

namespace strangler::acl::sync {
namespace {

// SOCI's SQLite header declares the sqlite3 API in this namespace.
using namespace sqlite_api;  // NOLINT(google-build-using-namespace)

using common::DbBackend;
using common::Error;
using Int = long long;

constexpr int64_t kRangeWidth = 1024;               // keys per verify range
constexpr int64_t kServiceIdFloor = 1000000000000;  // ids the service allocates after a flip

int64_t nowSeconds() {
  return static_cast<int64_t>(std::time(nullptr));
}

std::string sqlLiteral(const Value& v) {
  if (std::holds_alternative<std::monostate>(v)) return "NULL";
  if (const auto* i = std::get_if<int64_t>(&v)) return std::to_string(*i);
  if (const auto* d = std::get_if<double>(&v)) return describe(*d);
  std::string quoted = "'";
  for (char c : std::get<std::string>(v))
    quoted += c == '\'' ? std::string("''") : std::string(1, c);
  return quoted + "'";
}

Value readValue(const soci::row& row, std::size_t i) {
  if (row.get_indicator(i) == soci::i_null) return Value();
  switch (row.get_properties(i).get_data_type()) {
    case soci::dt_string:
      return row.get<std::string>(i);
    case soci::dt_double:
      return row.get<double>(i);
    case soci::dt_integer:
      return static_cast<int64_t>(row.get<int>(i));
    case soci::dt_long_long:
      return static_cast<int64_t>(row.get<long long>(i));
    case soci::dt_unsigned_long_long:
      return static_cast<int64_t>(row.get<unsigned long long>(i));
    default:
      return row.get<std::string>(i);
  }
}

uint64_t fnv1a(const std::string& text) {
  uint64_t hash = 1469598103934665603ULL;
  for (unsigned char c : text) {
    hash ^= c;
    hash *= 1099511628211ULL;
  }
  return hash;
}

std::string canonical(const Row& row) {
  std::string text;
  for (const auto& [column, value] : row)
    text += column + "=" + describe(value) + "|";
  return text;
}

/// One side of the sync: a session on a database, with its table for this mapping.
struct Side {
  std::string name;  // "monolith" or "service"
  common::DbTarget target;
  std::unique_ptr<soci::session> sql;
  std::string table;
  std::string key;
  std::vector<std::string> columns;   // mapped columns on this side (key included)
  std::vector<bool> integer_columns;  // which of them hold integers
  Row constants;                      // legacy side only

  DbBackend backend() const { return target.backend; }

  std::string whereConstants() const {
    std::string where;
    for (const auto& [column, value] : constants)
      where += (where.empty() ? "" : " AND ") + column + " = " + sqlLiteral(value);
    return where;
  }
  /// Columns written on this side: the mapped ones plus the legacy constants (user_type = 2).
  std::vector<std::string> writeColumns() const {
    auto all = columns;
    for (const auto& [c, v] : constants)
      all.push_back(c);
    return all;
  }
  std::string selectList() const {
    std::string list;
    for (std::size_t i = 0; i < columns.size(); ++i)
      list += (list.empty() ? "" : ", ") + selectColumn(columns[i], integer_columns[i]);
    for (const auto& [c, v] : constants)
      list += ", " + selectColumn(c, std::holds_alternative<int64_t>(v));
    return list;
  }
  // SOCI reads SQLite columns declared INTEGER as 32-bit ints (silently truncating larger
  // values), so integer columns are read as text there and parsed back exactly.
  std::string selectColumn(const std::string& column, bool integer) const {
    if (integer && backend() == DbBackend::kSqlite3) return "CAST(" + column + " AS TEXT)";
    return column;
  }
  Value columnValue(const soci::row& r, std::size_t i, bool integer) const {
    Value v = readValue(r, i);
    const auto* text = std::get_if<std::string>(&v);
    if (!integer || text == nullptr || backend() != DbBackend::kSqlite3) return v;
    std::size_t used = 0;
    try {
      const long long n = std::stoll(*text, &used);
      if (used == text->size()) return static_cast<int64_t>(n);
      const double d = std::stod(*text, &used);
      if (used == text->size()) return d;
    } catch (const std::exception&) {
      // Not a number: the translator reports it with the column's name.
    }
    return v;
  }

  /// Rows whose key is in (after, upto], ordered by key, at most `limit`.
  std::vector<std::pair<int64_t, Row>> readRange(std::optional<int64_t> after,
                                                 std::optional<int64_t> upto, int64_t limit) {
    std::string where = whereConstants();
    if (after) where += (where.empty() ? "" : " AND ") + key + " > " + std::to_string(*after);
    if (upto) where += (where.empty() ? "" : " AND ") + key + " <= " + std::to_string(*upto);
    std::string query = "SELECT " + selectList() + " FROM " + table;
    if (!where.empty()) query += " WHERE " + where;
    query += " ORDER BY " + key;
    if (limit > 0) query += " LIMIT " + std::to_string(limit);
    return fetch(query);
  }

  std::vector<std::pair<int64_t, Row>> readKeys(const std::vector<int64_t>& keys) {
    if (keys.empty()) return {};
    std::string list;
    for (auto k : keys)
      list += (list.empty() ? "" : ", ") + std::to_string(k);
    std::string where = key + " IN (" + list + ")";
    if (!constants.empty()) where += " AND " + whereConstants();
    return fetch("SELECT " + selectList() + " FROM " + table + " WHERE " + where);
  }

  std::vector<std::pair<int64_t, Row>> fetch(const std::string& query) {
    std::vector<std::pair<int64_t, Row>> rows;
    soci::rowset<soci::row> result = (sql->prepare << query);
    for (const auto& r : result) {
      Row row;
      std::size_t i = 0;
      for (std::size_t c = 0; c < columns.size(); ++c, ++i)
        row[columns[c]] = columnValue(r, i, integer_columns[c]);
      for (const auto& [c, v] : constants) {
        row[c] = columnValue(r, i, std::holds_alternative<int64_t>(v));
        ++i;
      }
      const auto* k = std::get_if<int64_t>(&row[key]);
      rows.emplace_back(k ? *k : 0, std::move(row));
    }
    return rows;
  }

  bool tableExists(const std::string& table_name) {
    int n = 0;
    if (backend() == DbBackend::kSqlite3) {
      *sql << "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name = :n",
          soci::use(table_name), soci::into(n);
    } else {
      *sql << "SELECT COUNT(*) FROM information_schema.tables WHERE table_name = :n"
              " AND table_schema = current_schema()",
          soci::use(table_name), soci::into(n);
    }
    return n > 0;
  }

  int64_t scalar(const std::string& query) {
    Int value = 0;
    soci::indicator ind = soci::i_ok;
    *sql << query, soci::into(value, ind);
    return ind == soci::i_ok ? value : 0;
  }

  /// The change-capture tables every side may need.
  void ensureSyncTables() {
    const bool sqlite = backend() == DbBackend::kSqlite3;
    const std::string serial =
        sqlite ? "INTEGER PRIMARY KEY AUTOINCREMENT" : "BIGSERIAL PRIMARY KEY";
    common::Transaction tx(*sql, backend(), common::Transaction::Mode::kWrite);
    *sql << "CREATE TABLE IF NOT EXISTS strangler_changes (seq " + serial +
                ", table_name VARCHAR(63) NOT NULL, pk BIGINT NOT NULL, op CHAR(1) NOT NULL,"
                " origin VARCHAR(8) NOT NULL, changed_at BIGINT NOT NULL)";
    *sql << "CREATE INDEX IF NOT EXISTS strangler_changes_by_table ON strangler_changes"
            " (table_name, seq)";
    // A row here, inside the sync's own transaction, tags the changes that transaction causes
    // as origin 'sync' (other transactions never see it), so nothing echoes back.
    *sql << "CREATE TABLE IF NOT EXISTS strangler_applying (marker INTEGER)";
    *sql << "CREATE TABLE IF NOT EXISTS strangler_sync_state (mapping VARCHAR(63) NOT NULL,"
            " direction VARCHAR(8) NOT NULL, phase VARCHAR(8) NOT NULL, last_key BIGINT,"
            " stream_from BIGINT NOT NULL, last_seq BIGINT NOT NULL, rows_copied BIGINT NOT NULL,"
            " changes_applied BIGINT NOT NULL, updated_at BIGINT NOT NULL,"
            " PRIMARY KEY (mapping, direction))";
    *sql << "CREATE TABLE IF NOT EXISTS strangler_dead_letters (mapping VARCHAR(63) NOT NULL,"
            " direction VARCHAR(8) NOT NULL, pk BIGINT NOT NULL, reason VARCHAR(1000) NOT NULL,"
            " row_text VARCHAR(4000) NOT NULL, created_at BIGINT NOT NULL,"
            " PRIMARY KEY (mapping, direction, pk))";
    *sql << "CREATE TABLE IF NOT EXISTS strangler_sync_owner (mapping VARCHAR(63) PRIMARY KEY,"
            " owner VARCHAR(16) NOT NULL, changed_at BIGINT NOT NULL)";
    tx.commit();
  }

  /// Triggers that record every insert/update/delete of this side's mapped rows in
  /// strangler_changes, in the same transaction as the change.
  void installCapture(const std::string& mapping) {
    const std::string filter_new = conditionOn("NEW");
    const std::string filter_old = conditionOn("OLD");
    const std::string prefix = "strangler_" + mapping + "_" + table;
    if (backend() == DbBackend::kSqlite3) {
      const std::string origin =
          "CASE WHEN EXISTS (SELECT 1 FROM strangler_applying) THEN 'sync' ELSE 'app' END";
      const std::string now = "CAST(strftime('%s', 'now') AS INTEGER)";
      const auto record = [&](const std::string& row, const std::string& op) {
        return "INSERT INTO strangler_changes (table_name, pk, op, origin, changed_at) VALUES ('" +
               table + "', " + row + "." + key + ", '" + op + "', " + origin + ", " + now + ");";
      };
      common::Transaction tx(*sql, backend(), common::Transaction::Mode::kWrite);
      *sql << "CREATE TRIGGER IF NOT EXISTS " + prefix + "_ins AFTER INSERT ON " + table +
                  (filter_new.empty() ? "" : " WHEN " + filter_new) + " BEGIN " +
                  record("NEW", "I") + " END";
      *sql << "CREATE TRIGGER IF NOT EXISTS " + prefix + "_upd AFTER UPDATE ON " + table +
                  (filter_new.empty() ? "" : " WHEN " + filter_new + " OR " + filter_old) +
                  " BEGIN " + record("NEW", "U") +
                  " INSERT INTO strangler_changes (table_name, pk, op, origin, changed_at)"
                  " SELECT '" +
                  table + "', OLD." + key + ", 'D', " + origin + ", " + now + " WHERE OLD." + key +
                  " <> NEW." + key + "; END";
      *sql << "CREATE TRIGGER IF NOT EXISTS " + prefix + "_del AFTER DELETE ON " + table +
                  (filter_old.empty() ? "" : " WHEN " + filter_old) + " BEGIN " +
                  record("OLD", "D") + " END";
      tx.commit();
      return;
    }
    // PostgreSQL: one function per mapping. The advisory lock serializes the transactions that
    // write captured changes, so sequence order is commit order and a reader never skips a
    // change that commits late.
    const std::string origin =
        "CASE WHEN EXISTS (SELECT 1 FROM strangler_applying) THEN 'sync' ELSE 'app' END";
    const auto insert = [&](const std::string& row, const std::string& op) {
      return "INSERT INTO strangler_changes (table_name, pk, op, origin, changed_at) VALUES ('" +
             table + "', " + row + "." + key + ", '" + op + "', " + origin +
             ", CAST(extract(epoch FROM now()) AS BIGINT));";
    };
    const std::string when_new = filter_new.empty() ? "TRUE" : filter_new;
    const std::string when_old = filter_old.empty() ? "TRUE" : filter_old;
    common::Transaction tx(*sql, backend(), common::Transaction::Mode::kWrite);
    *sql << "CREATE OR REPLACE FUNCTION " + prefix +
                "_capture() RETURNS trigger AS $body$ BEGIN"
                " PERFORM pg_advisory_xact_lock(74280001);"
                " IF TG_OP = 'DELETE' THEN IF " +
                when_old + " THEN " + insert("OLD", "D") +
                " END IF; RETURN OLD; END IF;"
                " IF TG_OP = 'INSERT' THEN IF " +
                when_new + " THEN " + insert("NEW", "I") +
                " END IF; RETURN NEW; END IF;"
                " IF " +
                when_new + " OR " + when_old + " THEN " + insert("NEW", "U") + " IF OLD." + key +
                " <> NEW." + key + " THEN " + insert("OLD", "D") +
                " END IF;"
                " END IF; RETURN NEW; END $body$ LANGUAGE plpgsql";
    *sql << "CREATE OR REPLACE TRIGGER " + prefix +
                "_capture AFTER INSERT OR UPDATE OR DELETE ON " + table +
                " FOR EACH ROW EXECUTE FUNCTION " + prefix + "_capture()";
    tx.commit();
  }

  std::string conditionOn(const std::string& row) const {
    std::string condition;
    for (const auto& [column, value] : constants)
      condition +=
          (condition.empty() ? "" : " AND ") + row + "." + column + " = " + sqlLiteral(value);
    return condition.empty() ? "" : "(" + condition + ")";
  }
};

/// Column type on a side, from the mapping's kind (used when the sync creates the service table
/// and to bind values when writing).
enum class ColumnType { kInteger, kReal, kText };

ColumnType serviceType(FieldKind kind) {
  switch (kind) {
    case FieldKind::kInteger:
      return ColumnType::kInteger;
    case FieldKind::kReal:
    case FieldKind::kMicroDegrees:
      return ColumnType::kReal;
    default:
      return ColumnType::kText;
  }
}

/// The C++ type a column is exchanged as.
enum class Cls { kInt, kReal, kText };

Cls legacyCls(const FieldMapping& f) {
  switch (f.kind) {
    case FieldKind::kInteger:
    case FieldKind::kMicroDegrees:
    case FieldKind::kCents:
      return Cls::kInt;
    case FieldKind::kReal:
      return Cls::kReal;
    case FieldKind::kEnum:
      return !f.enum_values.empty() && std::holds_alternative<int64_t>(f.enum_values.front().first)
                 ? Cls::kInt
                 : Cls::kText;
    case FieldKind::kText:
      return Cls::kText;
  }
  return Cls::kText;
}

Cls serviceCls(const FieldMapping& f) {
  if (f.kind == FieldKind::kInteger) return Cls::kInt;
  if (f.kind == FieldKind::kReal || f.kind == FieldKind::kMicroDegrees) return Cls::kReal;
  return Cls::kText;
}

/// Column vectors for SOCI's bulk exchange (one vector per column, plus NULL indicators).
struct TypedColumns {
  std::vector<Cls> cls;
  std::vector<std::vector<Int>> ints;
  std::vector<std::vector<double>> reals;
  std::vector<std::vector<std::string>> texts;
  std::vector<std::vector<soci::indicator>> nulls;

  explicit TypedColumns(std::vector<Cls> classes)
      : cls(std::move(classes)),
        ints(cls.size()),
        reals(cls.size()),
        texts(cls.size()),
        nulls(cls.size()) {}

  void resize(std::size_t rows) {
    for (std::size_t c = 0; c < cls.size(); ++c) {
      nulls[c].assign(rows, soci::i_ok);
      if (cls[c] == Cls::kInt)
        ints[c].resize(rows);
      else if (cls[c] == Cls::kReal)
        reals[c].resize(rows);
      else
        texts[c].resize(rows);
    }
  }
  std::size_t rows() const { return cls.empty() ? 0 : nulls.front().size(); }
  void bindInto(soci::details::prepare_temp_type& prep) {
    for (std::size_t c = 0; c < cls.size(); ++c) {
      if (cls[c] == Cls::kInt)
        prep, soci::into(ints[c], nulls[c]);
      else if (cls[c] == Cls::kReal)
        prep, soci::into(reals[c], nulls[c]);
      else
        prep, soci::into(texts[c], nulls[c]);
    }
  }
  Value get(std::size_t c, std::size_t r) const {
    if (nulls[c][r] == soci::i_null) return Value();
    if (cls[c] == Cls::kInt) return static_cast<int64_t>(ints[c][r]);
    if (cls[c] == Cls::kReal) return reals[c][r];
    return texts[c][r];
  }
  /// Like get(), but moves text out (the chunk is read once).
  Value take(std::size_t c, std::size_t r) {
    if (cls[c] == Cls::kText && nulls[c][r] != soci::i_null) return std::move(texts[c][r]);
    return get(c, r);
  }
  // Stores `v` converted to the column's class (the translator already checked the kind).
};

/// Reads a side's rows in key order, one chunk per call, into typed vectors (prepared once).
class ChunkReader {
 public:
  ChunkReader(Side& side, std::vector<Cls> classes, std::size_t key_column, int64_t chunk)
      : side_(side),
        columns_(std::move(classes)),
        key_column_(key_column),
        chunk_(static_cast<std::size_t>(chunk)) {
    // Walk the primary key: a constant's column is wrapped in an expression so the planner
    // cannot pick an index on it (which would scan and sort the whole table for every chunk).
    std::string where;
    for (const auto& [column, value] : side.constants) {
      // An expression on the column hides its indexes from the planner.
      const std::string hidden = std::holds_alternative<int64_t>(value) ? "(" + column + " + 0)"
                                                                        : "(" + column + " || '')";
      where += (where.empty() ? "" : " AND ") + hidden + " = " + sqlLiteral(value);
    }
    where += (where.empty() ? "" : " AND ") + side.key + " > :after";
    std::string list;
    for (const auto& c : side.columns)
      list += (list.empty() ? "" : ", ") + c;
    query_ = "SELECT " + list + " FROM " + side.table + " WHERE " + where + " ORDER BY " +
             side.key + " LIMIT " + std::to_string(chunk);
  }

  /// The next chunk after `after` (empty at the end). A statement per chunk: re-executing one
  /// with bulk vectors is not reliable on every SOCI backend, and preparing is cheap next to
  /// a chunk of rows.
  TypedColumns& next(int64_t after) {
    after_ = after;
    return run(query_, chunk_, true);
  }

  /// The rows with these keys (those that exist), in no particular order.
  TypedColumns& byKeys(const std::vector<int64_t>& keys) {
    std::string list;
    for (auto k : keys)
      list += (list.empty() ? "" : ", ") + std::to_string(k);
    std::string where = side_.key + " IN (" + list + ")";
    for (const auto& [column, value] : side_.constants) {
      // An expression on the column keeps the planner on the primary key.
      where += " AND " +
               (std::holds_alternative<int64_t>(value) ? "(" + column + " + 0)"
                                                       : "(" + column + " || '')") +
               " = " + sqlLiteral(value);
    }
    return run("SELECT " + columnList() + " FROM " + side_.table + " WHERE " + where, keys.size(),
               false);
  }

 private:
  std::string columnList() const {
    std::string list;
    for (const auto& c : side_.columns)
      list += (list.empty() ? "" : ", ") + c;
    return list;
  }
  TypedColumns& run(const std::string& query, std::size_t capacity, bool bind_after) {
    columns_.resize(std::max<std::size_t>(capacity, 1));
    soci::details::prepare_temp_type prep = (side_.sql->prepare << query);
    columns_.bindInto(prep);
    if (bind_after) prep, soci::use(after_);
    soci::statement st(prep);
    if (!st.execute(true)) columns_.resize(0);
    return columns_;
  }

 public:
  int64_t keyAt(std::size_t row) const { return columns_.ints[key_column_][row]; }

 private:
  Side& side_;
  TypedColumns columns_;
  std::size_t key_column_;
  std::size_t chunk_;
  std::string query_;
  Int after_ = 0;
};

/// INSERT … ON CONFLICT (key) DO UPDATE: writing a row twice leaves one row, the latest.
std::string upsertSql(const Side& side, const std::vector<std::string>& columns) {
  std::string names, params, updates;
  for (std::size_t i = 0; i < columns.size(); ++i) {
    names += (i ? ", " : "") + columns[i];
    params += (i ? ", :p" : ":p") + std::to_string(i);
    if (columns[i] != side.key)
      updates += (updates.empty() ? "" : ", ") + columns[i] + " = excluded." + columns[i];
  }
  return "INSERT INTO " + side.table + " (" + names + ") VALUES (" + params + ") ON CONFLICT (" +
         side.key + ") DO UPDATE SET " + updates;
}

/// A chunk of rows: values by column (mapping fields order) and the rows' keys.
struct Chunk {
  RowTranslator::Columns columns;
  std::vector<int64_t> keys;
  std::size_t rows() const { return keys.size(); }
};

/// Reads a side's mapped rows in key order, a chunk at a time.
class ChunkSource {
 public:
  virtual ~ChunkSource() = default;
  /// The rows after key `after` (none at the end).
  virtual void next(int64_t after, Chunk& chunk) = 0;
  /// The rows with these keys that exist (the others were deleted).
  virtual void byKeys(const std::vector<int64_t>& keys, Chunk& chunk) = 0;
};

/// Upserts rows into a side; `columns` are in writeColumns() order and of equal length.
class RowSink {
 public:
  virtual ~RowSink() = default;
  virtual void write(RowTranslator::Columns& columns) = 0;
};

class SociChunkSource : public ChunkSource {
 public:
  SociChunkSource(Side& side, std::vector<Cls> classes, std::size_t key_column, int64_t chunk)
      : reader_(side, std::move(classes), key_column, chunk) {}
  void next(int64_t after, Chunk& chunk) override { copy(reader_.next(after), chunk); }
  void byKeys(const std::vector<int64_t>& keys, Chunk& chunk) override {
    if (keys.empty()) {
      chunk.columns.clear();
      chunk.keys.clear();
      return;
    }
    copy(reader_.byKeys(keys), chunk);
  }

 private:
  void copy(TypedColumns& typed, Chunk& chunk) {
    const std::size_t n = typed.rows();
    chunk.columns.assign(typed.cls.size(), std::vector<Value>(n));
    chunk.keys.resize(n);
    for (std::size_t c = 0; c < typed.cls.size(); ++c)
      for (std::size_t r = 0; r < n; ++r)
        chunk.columns[c][r] = typed.take(c, r);
    for (std::size_t r = 0; r < n; ++r)
      chunk.keys[r] = reader_.keyAt(r);
  }

  ChunkReader reader_;
};

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

sqlite3* nativeHandle(soci::session& sql) {
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
    std::string list;
    for (auto k : keys)
      list += (list.empty() ? "" : ", ") + std::to_string(k);
    std::string where = side_.key + " IN (" + list + ")";
    // "+column" keeps the planner on the primary key (an index on the constant's column would
    // make it scan every mapped row).
    for (const auto& [column, value] : side_.constants)
      where += " AND +" + column + " = " + sqlLiteral(value);
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
    std::string where;
    for (const auto& [column, value] : side.constants)
      where += (where.empty() ? "+" : " AND +") + column + " = " + sqlLiteral(value);
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

/// PostgreSQL: one INSERT … SELECT FROM unnest(array, array, …) … ON CONFLICT per batch, each
/// column sent as one array literal (SOCI would make one round trip per row, and a long
/// VALUES list costs the server more to parse than the rows cost to write). Literals are quoted
/// by doubling single quotes, exact with standard_conforming_strings on (the default since 9.1,
/// checked when the sink is made).
class PostgresRowSink : public RowSink {
 public:
  PostgresRowSink(Side& side, const std::vector<std::string>& columns, std::vector<Cls> classes)
      : side_(side), classes_(std::move(classes)) {
    std::string setting;
    *side.sql << "SHOW standard_conforming_strings", soci::into(setting);
    if (setting != "on") throw soci::soci_error("the sync needs standard_conforming_strings = on");
    std::string names, updates;
    for (const auto& c : columns) {
      names += (names.empty() ? "" : ", ") + c;
      if (c != side.key) updates += (updates.empty() ? "" : ", ") + c + " = excluded." + c;
    }
    prefix_ = "INSERT INTO " + side.table + " (" + names + ") SELECT * FROM unnest(";
    suffix_ = ") ON CONFLICT (" + side.key + ") DO UPDATE SET " + updates;
  }

  void write(RowTranslator::Columns& columns) override {
    const std::size_t n = columns.empty() ? 0 : columns.front().size();
    constexpr std::size_t kRowsPerStatement = 5000;
    for (std::size_t start = 0; start < n; start += kRowsPerStatement) {
      const std::size_t end = std::min(n, start + kRowsPerStatement);
      std::string sql = prefix_;
      for (std::size_t c = 0; c < columns.size(); ++c) {
        if (c) sql += ", ";
        sql += arrayLiteral(columns[c], start, end, classes_[c]);
      }
      *side_.sql << sql + suffix_;
    }
  }

 private:
  // '{e1,e2,…}'::type[] with every element quoted for the array parser.
  static std::string arrayLiteral(const std::vector<Value>& column, std::size_t start,
                                  std::size_t end, Cls cls) {
    std::string out = "'{";
    for (std::size_t r = start; r < end; ++r) {
      if (r != start) out += ',';
      const Value& v = column[r];
      if (std::holds_alternative<std::monostate>(v)) {
        out += "NULL";
        continue;
      }
      std::string text;
      if (const auto* d = std::get_if<double>(&v)) {
        char buffer[32];
        std::snprintf(buffer, sizeof buffer, "%.17g", *d);
        text = buffer;
      } else if (const auto* i = std::get_if<int64_t>(&v)) {
        text = std::to_string(*i);
      } else {
        text = std::get<std::string>(v);
      }
      out += '"';
      for (char ch : text) {
        if (ch == '"' || ch == '\\') out += '\\';
        out += ch == '\'' ? std::string("''") : std::string(1, ch);
      }
      out += '"';
    }
    out += "}'::";
    out += cls == Cls::kInt ? "bigint[]" : cls == Cls::kReal ? "double precision[]" : "text[]";
    return out;
  }

  Side& side_;
  std::vector<Cls> classes_;
  std::string prefix_;
  std::string suffix_;
};

class SqliteRowSink : public RowSink {
 public:
  SqliteRowSink(Side& side, const std::vector<std::string>& columns)
      : statement_(nativeHandle(*side.sql), upsertSql(side, columns)) {}

  void write(RowTranslator::Columns& columns) override {
    const std::size_t n = columns.empty() ? 0 : columns.front().size();
    sqlite3_stmt* st = statement_.get();
    for (std::size_t r = 0; r < n; ++r) {
      sqlite3_reset(st);
      for (std::size_t c = 0; c < columns.size(); ++c) {
        const int i = static_cast<int>(c) + 1;
        const Value& v = columns[c][r];
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
      }
      statement_.check(sqlite3_step(st));
    }
    sqlite3_reset(st);
  }

 private:
  SqliteStatement statement_;
};

struct State {
  std::string phase = "new";
  std::optional<int64_t> last_key;
  int64_t stream_from = 0;
  int64_t last_seq = 0;
  int64_t rows_copied = 0;
  int64_t changes_applied = 0;
};

}  // namespace

const char* toString(Direction direction) {
  return direction == Direction::kForward ? "forward" : "reverse";
}

struct SyncEngine::Impl {
  RowTranslator translator;
  SyncOptions options;
  Side monolith;
  Side service;
  std::unique_ptr<ChunkSource> source_reader_for_apply_;  // reads changed keys' current rows

  Impl(RowTranslator t, SyncOptions o) : translator(std::move(t)), options(std::move(o)) {}

  // ---- ownership and state ------------------------------------------------------------------

  Direction direction() {
    if (!service.tableExists("strangler_sync_owner")) return Direction::kForward;
    std::string owner;
    soci::indicator ind = soci::i_null;
    *service.sql << "SELECT owner FROM strangler_sync_owner WHERE mapping = :m",
        soci::use(translator.name()), soci::into(owner, ind);
    return ind == soci::i_ok && owner == "service" ? Direction::kReverse : Direction::kForward;
  }

  Side& sourceOf(Direction d) { return d == Direction::kForward ? monolith : service; }
  Side& targetOf(Direction d) { return d == Direction::kForward ? service : monolith; }

  State readState(Side& target, Direction d) {
    State state;
    if (!target.tableExists("strangler_sync_state")) return state;
    std::string phase;
    Int last_key = 0, stream_from = 0, last_seq = 0, rows = 0, applied = 0;
    soci::indicator phase_ind = soci::i_null, key_ind = soci::i_null;
    const std::string dir = toString(d);
    *target.sql << "SELECT phase, last_key, stream_from, last_seq, rows_copied, changes_applied"
                   " FROM strangler_sync_state WHERE mapping = :m AND direction = :d",
        soci::use(translator.name()), soci::use(dir), soci::into(phase, phase_ind),
        soci::into(last_key, key_ind), soci::into(stream_from), soci::into(last_seq),
        soci::into(rows), soci::into(applied);
    if (phase_ind != soci::i_ok) return state;
    state.phase = phase;
    if (key_ind == soci::i_ok) state.last_key = last_key;
    state.stream_from = stream_from;
    state.last_seq = last_seq;
    state.rows_copied = rows;
    state.changes_applied = applied;
    return state;
  }

  // Written inside the caller's transaction, together with the rows it accounts for.
  void writeState(Side& target, Direction d, const State& s) {
    const std::string dir = toString(d);
    Int last_key = s.last_key.value_or(0);
    soci::indicator key_ind = s.last_key ? soci::i_ok : soci::i_null;
    Int stream_from = s.stream_from, last_seq = s.last_seq, rows = s.rows_copied,
        applied = s.changes_applied, now = nowSeconds();
    *target.sql
        << "INSERT INTO strangler_sync_state (mapping, direction, phase, last_key,"
           " stream_from, last_seq, rows_copied, changes_applied, updated_at) VALUES"
           " (:m, :d, :p, :k, :f, :s, :r, :a, :u) ON CONFLICT (mapping, direction) DO"
           " UPDATE SET phase = excluded.phase, last_key = excluded.last_key,"
           " stream_from = excluded.stream_from, last_seq = excluded.last_seq,"
           " rows_copied = excluded.rows_copied, changes_applied = excluded.changes_applied,"
           " updated_at = excluded.updated_at",
        soci::use(translator.name()), soci::use(dir), soci::use(s.phase),
        soci::use(last_key, key_ind), soci::use(stream_from), soci::use(last_seq), soci::use(rows),
        soci::use(applied), soci::use(now);
  }

  void deadLetter(Side& target, Direction d, int64_t key, const std::string& reason,
                  const Row& row) {
    const std::string dir = toString(d);
    Int pk = key, now = nowSeconds();
    const std::string text = canonical(row).substr(0, 3900);
    *target.sql << "INSERT INTO strangler_dead_letters (mapping, direction, pk, reason, row_text,"
                   " created_at) VALUES (:m, :d, :k, :r, :t, :c) ON CONFLICT (mapping, direction,"
                   " pk) DO UPDATE SET reason = excluded.reason, row_text = excluded.row_text,"
                   " created_at = excluded.created_at",
        soci::use(translator.name()), soci::use(dir), soci::use(pk), soci::use(reason),
        soci::use(text), soci::use(now);
  }

  void clearDeadLetter(Side& target, Direction d, int64_t key) {
    const std::string dir = toString(d);
    Int pk = key;
    *target.sql << "DELETE FROM strangler_dead_letters WHERE mapping = :m AND direction = :d"
                   " AND pk = :k",
        soci::use(translator.name()), soci::use(dir), soci::use(pk);
  }

  std::vector<Cls> classesOf(const Side& side) const {
    std::vector<Cls> classes;
    for (const auto& f : translator.fields())
      classes.push_back(&side == &monolith ? legacyCls(f) : serviceCls(f));
    return classes;
  }

  std::size_t keyIndex(const Side& side) const {
    for (std::size_t i = 0; i < side.columns.size(); ++i)
      if (side.columns[i] == side.key) return i;
    return 0;
  }

  std::unique_ptr<RowSink> sinkFor(Side& target) {
    if (target.backend() == DbBackend::kSqlite3)
      return std::make_unique<SqliteRowSink>(target, target.writeColumns());
    auto classes = classesOf(target);
    for (const auto& [column, value] : target.constants)
      classes.push_back(std::holds_alternative<int64_t>(value) ? Cls::kInt : Cls::kText);
    return std::make_unique<PostgresRowSink>(target, target.writeColumns(), std::move(classes));
  }

  std::unique_ptr<ChunkSource> sourceFor(Side& source) {
    if (source.backend() == DbBackend::kSqlite3)
      return std::make_unique<SqliteChunkSource>(source, keyIndex(source), options.chunk_rows);
    return std::make_unique<SociChunkSource>(source, classesOf(source), keyIndex(source),
                                             options.chunk_rows);
  }

  Translated<Row> translate(Direction d, const Row& row) {
    return d == Direction::kForward ? translator.toService(row) : translator.toLegacy(row);
  }

  // ---- schema -------------------------------------------------------------------------------

  void createServiceTable() {
    if (service.tableExists(service.table)) return;
    const bool sqlite = service.backend() == DbBackend::kSqlite3;
    std::string ddl = "CREATE TABLE IF NOT EXISTS " + service.table + " (";
    bool first = true;
    for (const auto& f : translator.fields()) {
      ddl += first ? "" : ", ";
      first = false;
      if (f.service == service.key) {
        ddl +=
            f.service + (sqlite ? " INTEGER PRIMARY KEY AUTOINCREMENT" : " BIGSERIAL PRIMARY KEY");
        continue;
      }
      const auto type = serviceType(f.kind);
      ddl += f.service + (type == ColumnType::kInteger ? " BIGINT"
                          : type == ColumnType::kReal  ? (sqlite ? " REAL" : " DOUBLE PRECISION")
                                                       : " TEXT");
      if (!f.nullable) ddl += " NOT NULL";
    }
    ddl += ")";
    common::Transaction tx(*service.sql, service.backend(), common::Transaction::Mode::kWrite);
    *service.sql << ddl;
    tx.commit();
  }

  common::Result<void> install() {
    monolith.ensureSyncTables();
    service.ensureSyncTables();
    createServiceTable();
    monolith.installCapture(translator.name());
    return {};
  }

  // ---- snapshot and stream ------------------------------------------------------------------

  void snapshot(Direction d, State& state, RunReport& report) {
    Side& source = sourceOf(d);
    Side& target = targetOf(d);
    if (state.phase == "new") {
      // Capture is on before the snapshot starts: whatever commits after this point is in the
      // change table with a higher sequence and is applied after the snapshot.
      state.stream_from = source.scalar("SELECT MAX(seq) FROM strangler_changes");
      state.last_seq = state.stream_from;
      state.phase = "snapshot";
      common::Transaction tx(*target.sql, target.backend(), common::Transaction::Mode::kWrite);
      writeState(target, d, state);
      tx.commit();
    }
    const std::string rest_where =
        source.whereConstants() + (state.last_key
                                       ? std::string(source.constants.empty() ? "" : " AND ") +
                                             source.key + " > " + std::to_string(*state.last_key)
                                       : "");
    const int64_t total =
        state.rows_copied + source.scalar("SELECT COUNT(*) FROM " + source.table +
                                          (rest_where.empty() ? "" : " WHERE " + rest_where));
    const auto started = std::chrono::steady_clock::now();
    int64_t copied_now = 0;
    auto reader = sourceFor(source);
    auto sink = sinkFor(target);
    const auto& fields = translator.fields();
    Chunk chunk;
    for (;;) {
      reader->next(state.last_key.value_or(std::numeric_limits<int64_t>::min()), chunk);
      const std::size_t n = chunk.rows();
      if (n == 0) break;
      const int64_t chunk_last = chunk.keys.back();
      if (state.last_key && chunk_last <= *state.last_key) {
        throw std::runtime_error("the " + source.name + " table's keys did not increase");
      }
      auto& columns = chunk.columns;
      const auto errors = translator.translateColumns(columns, d == Direction::kForward);
      RowTranslator::Columns out(fields.size() + target.constants.size());
      for (auto& column : out)
        column.reserve(n);
      for (std::size_t r = 0; r < n; ++r) {
        if (errors[r]) continue;
        for (std::size_t c = 0; c < fields.size(); ++c)
          out[c].push_back(std::move(columns[c][r]));
        std::size_t j = fields.size();
        for (const auto& [column, value] : target.constants)
          out[j++].push_back(value);
      }
      common::Transaction tx(*target.sql, target.backend(), common::Transaction::Mode::kWrite);
      *target.sql << "INSERT INTO strangler_applying (marker) VALUES (1)";
      // Rows the translator rejected are quarantined with their source values (read again:
      // the chunk's values were translated in place).
      std::vector<int64_t> rejected;
      for (std::size_t r = 0; r < n; ++r)
        if (errors[r]) rejected.push_back(chunk.keys[r]);
      std::map<int64_t, Row> originals;
      for (auto& [key, row] : source.readKeys(rejected))
        originals[key] = std::move(row);
      for (std::size_t r = 0; r < n; ++r) {
        if (!errors[r]) continue;
        deadLetter(target, d, chunk.keys[r], errors[r]->message(), originals[chunk.keys[r]]);
        ++report.dead_letters;
      }
      sink->write(out);
      state.last_key = chunk_last;
      state.rows_copied += static_cast<int64_t>(n);
      writeState(target, d, state);
      *target.sql << "DELETE FROM strangler_applying";
      tx.commit();
      copied_now += static_cast<int64_t>(n);
      report.snapshot_rows += static_cast<int64_t>(n);
      if (options.on_progress) {
        const double seconds =
            std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
        options.on_progress({state.rows_copied, total, seconds > 0 ? copied_now / seconds : 0});
      }
    }
    common::Transaction tx(*target.sql, target.backend(), common::Transaction::Mode::kWrite);
    state.phase = "stream";
    writeState(target, d, state);
    tx.commit();
    // A bulk load leaves a large SQLite write-ahead log; fold it in now rather than in the
    // middle of the stream, where a checkpoint would stall the first applies.
    if (target.backend() == DbBackend::kSqlite3) *target.sql << "PRAGMA wal_checkpoint(TRUNCATE)";
  }

  // Deletes the source's captured changes up to the checkpoint: they are applied (the
  // checkpoint is committed in the target), and only this direction reads this change table.
  void pruneApplied(Direction d, const State& state) {
    Side& source = sourceOf(d);
    const Int upto = state.last_seq;
    common::Transaction tx(*source.sql, source.backend(), common::Transaction::Mode::kWrite);
    *source.sql << "DELETE FROM strangler_changes WHERE table_name = :t AND seq <= :s",
        soci::use(source.table), soci::use(upto);
    tx.commit();
  }

  // Applies one batch of captured changes; returns how many change rows it consumed.
  int64_t applyBatch(Direction d, State& state, RunReport& report, RowSink& sink) {
    Side& source = sourceOf(d);
    Side& target = targetOf(d);
    std::vector<int64_t> keys;
    std::set<int64_t> seen;
    Int last_seq = state.last_seq;
    Int newest_change_s = 0;
    int64_t consumed = 0;
    {
      Int seq = 0, pk = 0, changed_at = 0;
      std::string origin;
      const Int after = state.last_seq;
      const Int limit = options.change_batch;
      soci::statement st =
          (source.sql->prepare << "SELECT seq, pk, origin, changed_at FROM strangler_changes"
                                  " WHERE table_name = :t AND seq > :s ORDER BY seq"
                                  " LIMIT :l",
           soci::use(source.table), soci::use(after), soci::use(limit), soci::into(seq),
           soci::into(pk), soci::into(origin), soci::into(changed_at));
      st.execute();
      while (st.fetch()) {
        ++consumed;
        last_seq = seq;
        newest_change_s = std::max(newest_change_s, changed_at);
        // Written by the sync itself (the other direction's apply): never sent back.
        if (origin == "sync") {
          ++report.echoes_skipped;
          continue;
        }
        if (seen.insert(pk).second) keys.push_back(pk);
      }
    }
    if (consumed == 0) return 0;
    // The current state of each changed key is applied (not the change's payload): applying the
    // same batch twice gives the same result, so a rerun after a kill is harmless.
    Chunk chunk;
    source_reader_for_apply_->byKeys(keys, chunk);
    const std::set<int64_t> present(chunk.keys.begin(), chunk.keys.end());
    const auto& fields = translator.fields();
    const auto errors = translator.translateColumns(chunk.columns, d == Direction::kForward);
    RowTranslator::Columns out(fields.size() + target.constants.size());
    std::vector<int64_t> rejected;
    for (std::size_t r = 0; r < chunk.rows(); ++r) {
      if (errors[r]) {
        rejected.push_back(chunk.keys[r]);
        continue;
      }
      for (std::size_t c = 0; c < fields.size(); ++c)
        out[c].push_back(std::move(chunk.columns[c][r]));
      std::size_t j = fields.size();
      for (const auto& [column, value] : target.constants)
        out[j++].push_back(value);
    }
    common::Transaction tx(*target.sql, target.backend(), common::Transaction::Mode::kWrite);
    *target.sql << "INSERT INTO strangler_applying (marker) VALUES (1)";
    if (!rejected.empty()) {
      // Quarantined with their source values (read again: translation was in place).
      std::map<int64_t, Row> originals;
      for (auto& [key, row] : source.readKeys(rejected))
        originals[key] = std::move(row);
      for (std::size_t r = 0; r < chunk.rows(); ++r) {
        if (!errors[r]) continue;
        deadLetter(target, d, chunk.keys[r], errors[r]->message(), originals[chunk.keys[r]]);
        ++report.dead_letters;
      }
    }
    sink.write(out);
    // A key that now translates, or is gone, is no longer a dead letter.
    const bool any_dead =
        target.scalar("SELECT COUNT(*) FROM strangler_dead_letters WHERE mapping = '" +
                      translator.name() + "' AND direction = '" + toString(d) + "'") > 0;
    const std::set<int64_t> still_rejected(rejected.begin(), rejected.end());
    for (auto key : keys) {
      if (any_dead && !still_rejected.count(key)) clearDeadLetter(target, d, key);
      if (present.count(key)) continue;
      Int k = key;
      std::string del = "DELETE FROM " + target.table + " WHERE " + target.key + " = :k";
      if (!target.constants.empty()) del += " AND " + target.whereConstants();
      *target.sql << del, soci::use(k);
    }
    state.last_seq = last_seq;
    state.changes_applied += static_cast<int64_t>(keys.size());
    report.changes_applied += static_cast<int64_t>(keys.size());
    writeState(target, d, state);
    *target.sql << "DELETE FROM strangler_applying";
    tx.commit();
    if (options.on_batch)
      options.on_batch({d, static_cast<int64_t>(keys.size()), last_seq, newest_change_s});
    return consumed;
  }

  common::Result<RunReport> runOnce(const std::atomic<bool>* stop, int poll_ms) {
    auto installed = install();
    if (!installed.ok()) return installed.error();
    const Direction d = direction();
    RunReport report;
    report.direction = d;
    State state = readState(targetOf(d), d);
    if (state.phase != "stream") snapshot(d, state, report);
    auto sink = sinkFor(targetOf(d));
    source_reader_for_apply_ = sourceFor(sourceOf(d));
    auto last_prune = std::chrono::steady_clock::now();
    for (;;) {
      while (applyBatch(d, state, report, *sink) > 0) {
        if (stop != nullptr && stop->load()) return report;
      }
      if (std::chrono::steady_clock::now() - last_prune > std::chrono::seconds(5)) {
        pruneApplied(d, state);
        last_prune = std::chrono::steady_clock::now();
      }
      if (stop == nullptr || stop->load()) return report;
      std::this_thread::sleep_for(std::chrono::milliseconds(poll_ms));
      if (direction() != d) return report;  // flipped by someone else: let the caller restart
    }
  }

  // ---- verify -------------------------------------------------------------------------------

  common::Result<VerifyReport> verify() {
    const Direction d = direction();
    Side& source = sourceOf(d);
    Side& target = targetOf(d);
    VerifyReport report;
    report.direction = d;
    struct Range {
      int64_t count = 0;
      uint64_t sum = 0;
    };
    std::map<int64_t, Range> source_ranges, target_ranges;
    std::map<int64_t, std::string> bad_source;
    for (std::optional<int64_t> after;;) {
      auto rows = source.readRange(after, std::nullopt, 20000);
      if (rows.empty() || (after && rows.back().first <= *after)) break;
      after = rows.back().first;
      for (const auto& [key, row] : rows) {
        ++report.source_rows;
        auto translated = translate(d, row);
        auto& range = source_ranges[key / kRangeWidth];
        ++range.count;
        if (!translated.ok()) {
          if (report.untranslatable.size() < 100)
            report.untranslatable.push_back(std::to_string(key) + ": " +
                                            translated.error().message());
          bad_source[key] = translated.error().message();
          continue;
        }
        range.sum += fnv1a(canonical(*translated));
      }
    }
    for (std::optional<int64_t> after;;) {
      auto rows = target.readRange(after, std::nullopt, 20000);
      if (rows.empty() || (after && rows.back().first <= *after)) break;
      after = rows.back().first;
      for (const auto& [key, row] : rows) {
        ++report.target_rows;
        auto& range = target_ranges[key / kRangeWidth];
        ++range.count;
        range.sum += fnv1a(canonical(row));
      }
    }
    std::set<int64_t> all_ranges;
    for (const auto& [r, v] : source_ranges)
      all_ranges.insert(r);
    for (const auto& [r, v] : target_ranges)
      all_ranges.insert(r);
    report.ranges = static_cast<int64_t>(all_ranges.size());
    for (auto r : all_ranges) {
      const auto& a = source_ranges[r];
      const auto& b = target_ranges[r];
      if (a.count == b.count && a.sum == b.sum) continue;
      ++report.differing_ranges;
      // Name the keys: compare the range row by row.
      std::map<int64_t, std::string> left, right;
      for (const auto& [key, row] :
           source.readRange(r * kRangeWidth - 1, (r + 1) * kRangeWidth - 1, 0)) {
        auto translated = translate(d, row);
        left[key] = translated.ok() ? canonical(*translated) : "untranslatable";
      }
      for (const auto& [key, row] :
           target.readRange(r * kRangeWidth - 1, (r + 1) * kRangeWidth - 1, 0))
        right[key] = canonical(row);
      std::set<int64_t> keys;
      for (const auto& [k, v] : left)
        keys.insert(k);
      for (const auto& [k, v] : right)
        keys.insert(k);
      for (auto k : keys) {
        if (left.count(k) && right.count(k) && left[k] == right[k]) continue;
        if (report.differing_keys.size() < 100) report.differing_keys.push_back(k);
      }
    }
    if (target.tableExists("strangler_dead_letters")) {
      report.dead_letters =
          target.scalar("SELECT COUNT(*) FROM strangler_dead_letters WHERE mapping = '" +
                        translator.name() + "'");
    }
    return report;
  }

  common::Result<StatusReport> status() {
    const Direction d = direction();
    Side& source = sourceOf(d);
    Side& target = targetOf(d);
    StatusReport report;
    report.direction = d;
    const State state = readState(target, d);
    report.phase = state.phase;
    report.snapshot_last_key = state.last_key;
    report.rows_copied = state.rows_copied;
    report.changes_applied = state.changes_applied;
    report.last_seq = state.last_seq;
    if (source.tableExists("strangler_changes")) {
      const std::string pending = " FROM strangler_changes WHERE table_name = '" + source.table +
                                  "' AND origin = 'app' AND seq > " +
                                  std::to_string(state.last_seq);
      report.pending_changes = source.scalar("SELECT COUNT(*)" + pending);
      if (report.pending_changes > 0)
        report.oldest_pending_age_s =
            nowSeconds() - source.scalar("SELECT MIN(changed_at)" + pending);
    }
    if (target.tableExists("strangler_dead_letters")) {
      report.dead_letters =
          target.scalar("SELECT COUNT(*) FROM strangler_dead_letters WHERE mapping = '" +
                        translator.name() + "' AND direction = '" + toString(d) + "'");
    }
    return report;
  }

  void bumpServiceIds() {
    const int64_t floor = std::max(
        kServiceIdFloor, service.scalar("SELECT MAX(" + service.key + ") FROM " + service.table));
    common::Transaction tx(*service.sql, service.backend(), common::Transaction::Mode::kWrite);
    if (service.backend() == DbBackend::kSqlite3) {
      *service.sql << "DELETE FROM sqlite_sequence WHERE name = '" + service.table + "'";
      *service.sql << "INSERT INTO sqlite_sequence (name, seq) VALUES ('" + service.table + "', " +
                          std::to_string(floor) + ")";
    } else {
      *service.sql << "SELECT setval(pg_get_serial_sequence('" + service.table + "', '" +
                          service.key + "'), " + std::to_string(floor) + ")";
    }
    tx.commit();
  }

  void setOwner(const std::string& owner) {
    Int now = nowSeconds();
    common::Transaction tx(*service.sql, service.backend(), common::Transaction::Mode::kWrite);
    *service.sql
        << "INSERT INTO strangler_sync_owner (mapping, owner, changed_at) VALUES (:m, :o, :c)"
           " ON CONFLICT (mapping) DO UPDATE SET owner = excluded.owner,"
           " changed_at = excluded.changed_at",
        soci::use(translator.name()), soci::use(owner), soci::use(now);
    tx.commit();
  }

  common::Result<Direction> flip(bool back, bool force) {
    auto drained = runOnce(nullptr, 0);
    if (!drained.ok()) return drained.error();
    const Direction d = direction();
    if (!back && d == Direction::kReverse)
      return Error{"refused",
                   "mapping '" + translator.name() + "' is already owned by the service"};
    if (back && d == Direction::kForward)
      return Error{"refused",
                   "mapping '" + translator.name() + "' is already owned by the monolith"};
    auto check = verify();
    if (!check.ok()) return check.error();
    if (!back && !check->identical() && !force) {
      return Error{"refused", "both sides differ (" + std::to_string(check->differing_ranges) +
                                  " key ranges); run `sync verify`, or flip with --force to let"
                                  " the service's rows win"};
    }
    if (!back) {
      service.installCapture(translator.name());
      State reverse = readState(monolith, Direction::kReverse);
      // Identical sides need no snapshot; forced over differences, the service's rows are all
      // copied back first (a reverse snapshot).
      reverse.phase = check->identical() ? "stream" : "new";
      reverse.last_key.reset();
      reverse.last_seq = service.scalar("SELECT MAX(seq) FROM strangler_changes");
      reverse.stream_from = reverse.last_seq;
      common::Transaction tx(*monolith.sql, monolith.backend(), common::Transaction::Mode::kWrite);
      writeState(monolith, Direction::kReverse, reverse);
      tx.commit();
      bumpServiceIds();
      setOwner("service");
      if (reverse.phase == "new") {
        auto copied = runOnce(nullptr, 0);
        if (!copied.ok()) return copied.error();
      }
      return Direction::kReverse;
    }
    // Back to the monolith: the forward checkpoint is where it was, so the monolith's own
    // writes made meanwhile (captured with origin 'app') reach the service now, and the sync's
    // own writes (origin 'sync') are skipped. The monolith is the owner again: where the two
    // sides disagree, its rows win.
    setOwner("monolith");
    auto forward = runOnce(nullptr, 0);
    if (!forward.ok()) return forward.error();
    return Direction::kForward;
  }
};

SyncEngine::SyncEngine(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
SyncEngine::~SyncEngine() = default;

common::Result<std::unique_ptr<SyncEngine>> SyncEngine::open(const std::string& monolith_db,
                                                             const std::string& service_db,
                                                             const std::string& mapping,
                                                             SyncOptions options) {
  using R = common::Result<std::unique_ptr<SyncEngine>>;
  auto translator = RowTranslator::load(mapping);
  if (!translator.ok()) return translator.error();
  const auto* key_field = [&]() -> const FieldMapping* {
    for (const auto& f : translator->fields())
      if (f.legacy == translator->legacyKey()) return &f;
    return nullptr;
  }();
  if (key_field == nullptr || key_field->kind != FieldKind::kInteger) {
    return Error{"invalid_mapping", "the sync needs an integer key column"};
  }
  auto from = common::parseConnectionString(monolith_db);
  if (!from.ok()) return Error{"usage", "--from: " + from.error().message};
  auto to = common::parseConnectionString(service_db);
  if (!to.ok()) return Error{"usage", "--to: " + to.error().message};
  auto impl = std::make_unique<Impl>(translator.value(), std::move(options));
  impl->monolith.name = "monolith";
  impl->monolith.target = *from;
  impl->monolith.table = translator->legacyTable();
  impl->monolith.key = translator->legacyKey();
  impl->monolith.constants = translator->legacyConstants();
  impl->service.name = "service";
  impl->service.target = *to;
  impl->service.table = translator->serviceTable();
  impl->service.key = translator->serviceKey();
  for (const auto& f : translator->fields()) {
    impl->monolith.columns.push_back(f.legacy);
    impl->service.columns.push_back(f.service);
    const bool integer_codes =
        !f.enum_values.empty() && std::holds_alternative<int64_t>(f.enum_values.front().first);
    impl->monolith.integer_columns.push_back(
        f.kind == FieldKind::kInteger || f.kind == FieldKind::kMicroDegrees ||
        f.kind == FieldKind::kCents || (f.kind == FieldKind::kEnum && integer_codes));
    impl->service.integer_columns.push_back(f.kind == FieldKind::kInteger);
  }
  for (Side* side : {&impl->monolith, &impl->service}) {
    try {
      side->sql = std::make_unique<soci::session>();
      common::openSession(*side->sql, side->target);
      if (side->backend() == DbBackend::kPostgresql) {
        // The sync walks tables by primary key in chunks. Without fresh statistics the planner
        // prefers a full scan and a sort for every chunk (quadratic over a snapshot); on this
        // session only, tell it to walk the index.
        *side->sql << "SET enable_seqscan = off";
        *side->sql << "SET enable_sort = off";
      }
    } catch (const std::exception& e) {
      return Error{"unreachable", "cannot open the " + side->name + " database (" +
                                      side->target.original + "): " + e.what()};
    }
  }
  // Everything the sync reads must exist before it writes anything.
  try {
    if (!impl->monolith.tableExists(impl->monolith.table)) {
      return Error{"missing_table",
                   "the monolith database has no table '" + impl->monolith.table + "'"};
    }
    impl->monolith.fetch("SELECT " + impl->monolith.selectList() + " FROM " + impl->monolith.table +
                         " WHERE 1 = 0");
  } catch (const soci::soci_error& e) {
    return Error{"missing_column", "the monolith table '" + impl->monolith.table +
                                       "' lacks a mapped column: " + e.what()};
  }
  return R(std::unique_ptr<SyncEngine>(new SyncEngine(std::move(impl))));
}

namespace {

template <typename Fn>
auto guarded(Fn fn) -> decltype(fn()) {
  try {
    return fn();
  } catch (const soci::soci_error& e) {
    return Error{"database_error", e.what()};
  }
}

}  // namespace

common::Result<void> SyncEngine::install() {
  return guarded([&] { return impl_->install(); });
}
common::Result<RunReport> SyncEngine::run() {
  return guarded([&] { return impl_->runOnce(nullptr, 0); });
}
common::Result<RunReport> SyncEngine::watch(const std::atomic<bool>& stop, int poll_ms) {
  return guarded([&] { return impl_->runOnce(&stop, poll_ms); });
}
common::Result<VerifyReport> SyncEngine::verify() {
  return guarded([&] { return impl_->verify(); });
}
common::Result<StatusReport> SyncEngine::status() {
  return guarded([&] { return impl_->status(); });
}
common::Result<Direction> SyncEngine::flip(bool back, bool force) {
  return guarded([&] { return impl_->flip(back, force); });
}

}  // namespace strangler::acl::sync
