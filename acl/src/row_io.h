#pragma once
// Reading and writing a side's mapped rows in bulk: typed column vectors, chunk sources (a
// native SQLite path and a SOCI one) and row sinks (prepared multi-row SQLite upserts; PostgreSQL
// binary COPY, straight into the table or through a staging table and one upsert). Private to the
// sync's sources.

#include <soci/postgresql/soci-postgresql.h>

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "strangler/acl/row_translator.h"
#include "sync_side.h"

namespace strangler::acl::sync::detail {

/// Column type on a side, from the mapping's kind (used when the sync creates the service table
/// and to bind values when writing).
enum class ColumnType { kInteger, kReal, kText };

inline ColumnType serviceType(FieldKind kind) {
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

inline Cls legacyCls(const FieldMapping& f) {
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

inline Cls serviceCls(const FieldMapping& f) {
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

/// "ON CONFLICT (key) DO UPDATE SET …" for the columns in `updated` (every non-key column when
/// `updated` is empty); DO NOTHING when no column is left to update.
inline std::string onConflict(const Side& side, const std::vector<std::string>& columns,
                              const std::set<std::string>* updated) {
  std::string updates;
  for (const auto& c : columns) {
    if (c == side.key || (updated != nullptr && !updated->count(c))) continue;
    updates += (updates.empty() ? "" : ", ") + c + " = excluded." + c;
  }
  return " ON CONFLICT (" + side.key + ") DO " +
         (updates.empty() ? std::string("NOTHING") : "UPDATE SET " + updates);
}

/// INSERT … ON CONFLICT (key) DO UPDATE: writing a row twice leaves one row, the latest. A new
/// row is inserted whole; an existing one gets only the `updated` columns (all when null).
inline std::string upsertSql(const Side& side, const std::vector<std::string>& columns,
                             const std::set<std::string>* updated = nullptr) {
  std::string names, params;
  for (std::size_t i = 0; i < columns.size(); ++i) {
    names += (i ? ", " : "") + columns[i];
    params += (i ? ", :p" : ":p") + std::to_string(i);
  }
  return "INSERT INTO " + side.table + " (" + names + ") VALUES (" + params + ")" +
         onConflict(side, columns, updated);
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

/// A PostgreSQL identifier as the engine's unquoted SQL names it (folded to lower case), quoted.
inline std::string quotedIdentifier(const std::string& name) {
  std::string quoted = "\"";
  for (char c : name) {
    if (c == '"') quoted += '"';
    quoted += (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c;
  }
  return quoted + "\"";
}

/// PostgreSQL: rows are sent with COPY … FROM STDIN in binary format (no quoting or escaping of
/// values, numbers sent as numbers). New rows (a snapshot) are copied straight into the table
/// when its column types are the ones the values are encoded as; a copy that meets an existing
/// key is undone (a savepoint) and, like every write of a sink for some columns only, the rows
/// go to a temporary staging table instead, then one INSERT … SELECT … ON CONFLICT moves them
/// into the table. The staging table is made once per session and column set, ON COMMIT DELETE
/// ROWS, and emptied by the move itself, so writes in one transaction never see each other's
/// rows. A write outside a transaction runs in its own.
class PostgresRowSink : public RowSink {
 public:
  PostgresRowSink(Side& side, const std::vector<std::string>& columns, std::vector<Cls> classes,
                  const std::set<std::string>* updated = nullptr)
      : side_(side), classes_(std::move(classes)) {
    std::string names, definition, signature = side.table;
    for (std::size_t i = 0; i < columns.size(); ++i) {
      const std::string quoted = quotedIdentifier(columns[i]);
      const char* type = classes_[i] == Cls::kInt    ? "bigint"
                         : classes_[i] == Cls::kReal ? "double precision"
                                                     : "text";
      names += (i ? ", " : "") + quoted;
      definition += (i ? ", " : "") + quoted + " " + type;
      signature += "|" + columns[i] + " " + type;
    }
    char suffix[17];
    std::snprintf(suffix, sizeof suffix, "%016llx",
                  static_cast<unsigned long long>(fnv1a(signature)));
    stage_ = std::string("strangler_stage_") + suffix;
    create_ = "CREATE TEMPORARY TABLE " + stage_ + " (" + definition + ") ON COMMIT DELETE ROWS";
    copy_ = "COPY pg_temp." + stage_ + " (" + names + ") FROM STDIN (FORMAT binary)";
    copy_direct_ =
        "COPY " + quotedIdentifier(side.table) + " (" + names + ") FROM STDIN (FORMAT binary)";
    // Straight into the table only for whole rows, and only when binary values of our types
    // are what its columns take (an INTEGER column needs the move's cast).
    direct_ = updated == nullptr && typesMatch(side, columns);
    std::string updates;
    for (const auto& c : columns) {
      if (c == side.key || (updated != nullptr && !updated->count(c))) continue;
      const std::string quoted = quotedIdentifier(c);
      updates += (updates.empty() ? "" : ", ") + quoted + " = excluded." + quoted;
    }
    move_ = "WITH staged AS (DELETE FROM pg_temp." + stage_ + " RETURNING " + names +
            ") INSERT INTO " + quotedIdentifier(side.table) + " (" + names + ") SELECT " + names +
            " FROM staged ON CONFLICT (" + quotedIdentifier(side.key) + ") DO " +
            (updates.empty() ? std::string("NOTHING") : "UPDATE SET " + updates);
  }

  void write(RowTranslator::Columns& columns) override {
    const std::size_t n = columns.empty() ? 0 : columns.front().size();
    if (n == 0) return;
    encode(columns, n);  // before COPY starts: a value of the wrong kind throws here
    PGconn* conn = connection();
    const bool own_transaction = PQtransactionStatus(conn) == PQTRANS_IDLE;
    if (own_transaction) command(conn, "BEGIN");
    try {
      if (!direct_ || !copyDirect(conn)) copyStaged(conn);
      if (own_transaction) command(conn, "COMMIT");
    } catch (...) {
      if (own_transaction) PQclear(PQexec(conn, "ROLLBACK"));
      throw;
    }
  }

 private:
  PGconn* connection() {
    return static_cast<soci::postgresql_session_backend*>(side_.sql->get_backend())->conn_;
  }

  [[noreturn]] static void fail(PGconn* conn, PGresult* result, const std::string& what) {
    std::string message = result != nullptr ? PQresultErrorMessage(result) : "";
    if (message.empty()) message = PQerrorMessage(conn);
    if (result != nullptr) PQclear(result);
    throw soci::soci_error(what + ": " + message);
  }

  static void command(PGconn* conn, const std::string& sql) {
    PGresult* result = PQexec(conn, sql.c_str());
    if (PQresultStatus(result) != PGRES_COMMAND_OK) fail(conn, result, sql);
    PQclear(result);
  }

  // The second column of `sql`'s row is not NULL.
  static bool stageExists(PGconn* conn, const std::string& sql) {
    PGresult* result = PQexec(conn, sql.c_str());
    if (PQresultStatus(result) != PGRES_TUPLES_OK) fail(conn, result, sql);
    const bool exists = PQntuples(result) > 0 && !PQgetisnull(result, 0, 1);
    PQclear(result);
    return exists;
  }

  // Copies the rows into the table itself; false (and nothing written) when one of them exists
  // already: later writes of this sink go through the staging table.
  bool copyDirect(PGconn* conn) {
    command(conn, "SAVEPOINT strangler_copy");
    if (copyIn(conn, copy_direct_, true)) {
      command(conn, "RELEASE SAVEPOINT strangler_copy");
      return true;
    }
    command(conn, "ROLLBACK TO SAVEPOINT strangler_copy");
    command(conn, "RELEASE SAVEPOINT strangler_copy");
    direct_ = false;
    return false;
  }

  void copyStaged(PGconn* conn) {
    // The staging table may be gone with a rolled-back transaction that made it. JIT off for
    // the transaction: the sync's sessions run with enable_seqscan off, which prices the staging
    // table's scan so high that every move would be JIT-compiled (30 ms a chunk).
    const std::string prepare =
        "SELECT set_config('jit', 'off', true), (SELECT 1 FROM pg_class"
        " WHERE relname = '" +
        stage_ + "' AND relnamespace = pg_my_temp_schema())";
    if (!stageExists(conn, prepare)) command(conn, create_);
    copyIn(conn, copy_, false);
    command(conn, move_);
  }

  // Sends the encoded rows with `copy`. A duplicate key returns false when `may_conflict`.
  bool copyIn(PGconn* conn, const std::string& copy, bool may_conflict) {
    PGresult* started = PQexec(conn, copy.c_str());
    if (PQresultStatus(started) != PGRES_COPY_IN) fail(conn, started, copy);
    PQclear(started);
    const bool sent = PQputCopyData(conn, buffer_.data(), static_cast<int>(buffer_.size())) == 1 &&
                      PQputCopyEnd(conn, nullptr) == 1;
    // The COPY's own result, then the end of its results.
    PGresult* result = PQgetResult(conn);
    const bool ok = sent && PQresultStatus(result) == PGRES_COMMAND_OK;
    while (PGresult* rest = PQgetResult(conn))
      PQclear(rest);
    if (ok) {
      PQclear(result);
      return true;
    }
    const char* state = result != nullptr ? PQresultErrorField(result, PG_DIAG_SQLSTATE) : nullptr;
    if (sent && may_conflict && state != nullptr && std::string(state) == "23505") {
      PQclear(result);
      return false;
    }
    fail(conn, result, copy);
  }

  // Whether every column of the table has the type its values are encoded as.
  bool typesMatch(Side& side, const std::vector<std::string>& columns) {
    const std::string table = quotedIdentifier(side.table);
    for (std::size_t i = 0; i < columns.size(); ++i) {
      const std::string quoted = quotedIdentifier(columns[i]);
      const std::string name = quoted.substr(1, quoted.size() - 2);  // as the catalog has it
      std::string type;
      soci::indicator found = soci::i_null;
      *side.sql << "SELECT format_type(atttypid, NULL) FROM pg_attribute WHERE attrelid ="
                   " to_regclass(:t) AND attname = :c AND attnum > 0 AND NOT attisdropped",
          soci::use(table), soci::use(name), soci::into(type, found);
      if (found != soci::i_ok) return false;
      const bool match = classes_[i] == Cls::kInt ? type == "bigint"
                         : classes_[i] == Cls::kReal
                             ? type == "double precision"
                             : type == "text" || type == "character varying";
      if (!match) return false;
    }
    return true;
  }

  // PostgreSQL's binary COPY format: a signature, flags and header extension, then per row the
  // field count and each field's length (-1: NULL) and bytes, in network byte order.
  void encode(const RowTranslator::Columns& columns, std::size_t n) {
    buffer_.clear();
    buffer_.append("PGCOPY\n\377\r\n\0", 11);
    put32(0);
    put32(0);
    for (std::size_t r = 0; r < n; ++r) {
      put16(static_cast<uint16_t>(columns.size()));
      for (std::size_t c = 0; c < columns.size(); ++c)
        putValue(columns[c][r], classes_[c], c);
    }
    put16(0xffff);
  }

  void putValue(const Value& v, Cls cls, std::size_t column) {
    if (std::holds_alternative<std::monostate>(v)) {
      put32(0xffffffff);
      return;
    }
    const auto* i = std::get_if<int64_t>(&v);
    const auto* d = std::get_if<double>(&v);
    const auto* text = std::get_if<std::string>(&v);
    if (cls == Cls::kText) {
      std::string formatted;
      if (i != nullptr) formatted = std::to_string(*i);
      if (d != nullptr) {
        char buffer[32];
        std::snprintf(buffer, sizeof buffer, "%.17g", *d);
        formatted = buffer;
      }
      const std::string& bytes = text != nullptr ? *text : formatted;
      put32(static_cast<uint32_t>(bytes.size()));
      buffer_ += bytes;
      return;
    }
    put32(8);
    if (cls == Cls::kInt) {
      int64_t value = 0;
      if (i != nullptr) {
        value = *i;
      } else if (d != nullptr && std::nearbyint(*d) == *d && std::fabs(*d) < 9.2e18) {
        value = static_cast<int64_t>(*d);
      } else if (text == nullptr || !parse(*text, value)) {
        throw soci::soci_error("column " + std::to_string(column) + ": " + describe(v) +
                               " is not an integer");
      }
      put64(static_cast<uint64_t>(value));
      return;
    }
    double value = 0;
    if (d != nullptr) {
      value = *d;
    } else if (i != nullptr) {
      value = static_cast<double>(*i);
    } else if (!parse(*text, value)) {
      throw soci::soci_error("column " + std::to_string(column) + ": " + describe(v) +
                             " is not a number");
    }
    uint64_t bits = 0;
    std::memcpy(&bits, &value, sizeof bits);
    put64(bits);
  }

  template <typename T>
  static bool parse(const std::string& text, T& value) {
    const char* end = text.data() + text.size();
    auto [ptr, ec] = std::from_chars(text.data(), end, value);
    return ec == std::errc() && ptr == end && !text.empty();
  }

  void put16(uint16_t v) {
    const char bytes[2] = {static_cast<char>(v >> 8), static_cast<char>(v)};
    buffer_.append(bytes, 2);
  }
  void put32(uint32_t v) {
    put16(static_cast<uint16_t>(v >> 16));
    put16(static_cast<uint16_t>(v));
  }
  void put64(uint64_t v) {
    put32(static_cast<uint32_t>(v >> 32));
    put32(static_cast<uint32_t>(v));
  }

  Side& side_;
  std::vector<Cls> classes_;
  std::string stage_;
  std::string create_;
  std::string copy_;
  std::string copy_direct_;
  std::string move_;
  bool direct_ = false;
  std::string buffer_;  ///< one write's COPY data (reused)
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
