#pragma once
// Reading and writing a side's mapped rows in bulk: typed column vectors, chunk sources (a
// native SQLite path and a SOCI one) and row sinks (prepared SQLite upserts, PostgreSQL array
// upserts). Private to the sync's sources.

#include <algorithm>
#include <cstdio>
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

/// PostgreSQL: one INSERT … SELECT FROM unnest(array, array, …) … ON CONFLICT per batch, each
/// column sent as one array literal (SOCI would make one round trip per row, and a long
/// VALUES list costs the server more to parse than the rows cost to write). Literals are quoted
/// by doubling single quotes, exact with standard_conforming_strings on (the default since 9.1,
/// checked when the sink is made).
class PostgresRowSink : public RowSink {
 public:
  PostgresRowSink(Side& side, const std::vector<std::string>& columns, std::vector<Cls> classes,
                  const std::set<std::string>* updated = nullptr)
      : side_(side), classes_(std::move(classes)) {
    std::string setting;
    *side.sql << "SHOW standard_conforming_strings", soci::into(setting);
    if (setting != "on") throw soci::soci_error("the sync needs standard_conforming_strings = on");
    std::string names;
    for (const auto& c : columns)
      names += (names.empty() ? "" : ", ") + c;
    prefix_ = "INSERT INTO " + side.table + " (" + names + ") SELECT * FROM unnest(";
    suffix_ = ")" + onConflict(side, columns, updated);
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
  SqliteRowSink(Side& side, const std::vector<std::string>& columns,
                const std::set<std::string>* updated = nullptr)
      : statement_(nativeHandle(*side.sql), upsertSql(side, columns, updated)) {}

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

}  // namespace strangler::acl::sync::detail
