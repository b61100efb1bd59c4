#pragma once
// One side of the sync (the monolith's or the service's database) and the small helpers every
// part of the sync shares. Private to the sync's sources.

#include <soci/soci.h>
#include <soci/sqlite3/soci-sqlite3.h>

#include <algorithm>
#include <cctype>
#include <cstdint>
#include <ctime>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "engine.h"
#include "strangler/acl/row.h"
#include "strangler/common/db.h"
#include "strangler/common/result.h"

namespace strangler::acl::sync::detail {

// SOCI's SQLite header declares the sqlite3 API in this namespace.
using namespace sqlite_api;  // NOLINT(google-build-using-namespace)

using common::DbBackend;
using common::Error;
using Int = long long;

/// True when a statement gave up on a lock another session holds (PostgreSQL's lock_timeout,
/// SQLite's busy database): worth trying again in a moment.
inline bool lockBusy(const soci::soci_error& e) {
  const std::string what = e.what();
  return what.find("lock timeout") != std::string::npos ||
         what.find("database is locked") != std::string::npos;
}

inline int64_t nowSeconds() {
  return static_cast<int64_t>(std::time(nullptr));
}

inline std::string sqlLiteral(const Value& v) {
  if (std::holds_alternative<std::monostate>(v)) return "NULL";
  if (const auto* i = std::get_if<int64_t>(&v)) return std::to_string(*i);
  if (const auto* d = std::get_if<double>(&v)) return describe(*d);
  std::string quoted = "'";
  for (char c : std::get<std::string>(v))
    quoted += c == '\'' ? std::string("''") : std::string(1, c);
  return quoted + "'";
}

inline Value readValue(const soci::row& row, std::size_t i) {
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

/// "1, 2, 3": keys for an SQL IN list.
inline std::string keyList(const std::vector<int64_t>& keys) {
  std::string list;
  for (auto k : keys)
    list += (list.empty() ? "" : ", ") + std::to_string(k);
  return list;
}

/// Calls `fn` with `keys` in slices of at most `size` (IN lists stay within statement limits).
template <typename Fn>
void forEachSlice(const std::vector<int64_t>& keys, std::size_t size, Fn&& fn) {
  for (std::size_t at = 0; at < keys.size(); at += size) {
    const std::vector<int64_t> slice(
        keys.begin() + static_cast<std::ptrdiff_t>(at),
        keys.begin() + static_cast<std::ptrdiff_t>(std::min(keys.size(), at + size)));
    fn(slice);
  }
}

inline std::string lowerCase(std::string text) {
  for (auto& c : text)
    c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return text;
}

inline uint64_t fnv1a(const std::string& text) {
  uint64_t hash = 1469598103934665603ULL;
  for (unsigned char c : text) {
    hash ^= c;
    hash *= 1099511628211ULL;
  }
  return hash;
}

inline std::string canonical(const Row& row) {
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
  std::vector<std::string> columns;         // mapped columns on this side (key included)
  std::vector<bool> integer_columns;        // which of them hold integers
  Row constants;                            // legacy side only
  bool logical = false;                     // capture from the WAL (logical_log.h), not triggers
  std::string slot;                         // the replication slot, when logical
  std::unique_ptr<soci::session> slot_sql;  // reads the slot outside the applying transaction

  DbBackend backend() const { return target.backend; }
  /// What this database does its own way (engine.h).
  const Engine& engine() const { return engineFor(target.backend); }

  /// The columns an update can change: the mapped ones; the constants decide membership.
  std::vector<std::string> trackedColumns() const {
    std::vector<std::string> tracked;
    for (const auto& c : columns)
      if (c != key) tracked.push_back(c);
    return tracked;
  }

  /// The legacy constants as a condition (user_type = 2). Each column is wrapped in an
  /// expression that hides its indexes from the planner: reads here go by the key (a range, an
  /// IN list), and an index on the constant's column (every mapped row has the same value) would
  /// make the planner scan and sort all mapped rows for every chunk or key set instead.
  std::string whereConstants() const {
    std::string where;
    for (const auto& [column, value] : constants) {
      const std::string hidden = std::holds_alternative<int64_t>(value) ? "(" + column + " + 0)"
                                                                        : "(" + column + " || '')";
      where += (where.empty() ? "" : " AND ") + hidden + " = " + sqlLiteral(value);
    }
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
    if (integer && engine().integersAsText()) return "CAST(" + column + " AS TEXT)";
    return column;
  }
  Value columnValue(const soci::row& r, std::size_t i, bool integer) const {
    Value v = readValue(r, i);
    const auto* text = std::get_if<std::string>(&v);
    if (!integer || text == nullptr || !engine().integersAsText()) return v;
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
    std::string where = key + " IN (" + keyList(keys) + ")";
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

  bool tableExists(const std::string& table_name) { return engine().tableExists(*sql, table_name); }

  int64_t scalar(const std::string& query) {
    Int value = 0;
    soci::indicator ind = soci::i_ok;
    *sql << query, soci::into(value, ind);
    return ind == soci::i_ok ? value : 0;
  }

  /// Adds a column to one of the sync's own tables when an older version created it without.
  void addColumnIfMissing(const std::string& table_name, const std::string& column,
                          const std::string& type) {
    if (!columnExists(table_name, column))
      *sql << "ALTER TABLE " + table_name + " ADD COLUMN " + column + " " + type;
  }

  bool columnExists(const std::string& table_name, const std::string& column) {
    return engine().columnExists(*sql, table_name, column);
  }

  std::string conditionOn(const std::string& row) const {
    std::string condition;
    for (const auto& [column, value] : constants)
      condition +=
          (condition.empty() ? "" : " AND ") + row + "." + column + " = " + sqlLiteral(value);
    return condition.empty() ? "" : "(" + condition + ")";
  }
};

/// A read-only transaction that sees one snapshot of the database until it ends.
class ReadSnapshot {
 public:
  explicit ReadSnapshot(Side& side) : side_(side) { *side.sql << side.engine().beginSnapshot(); }
  ~ReadSnapshot() {
    try {
      *side_.sql << "COMMIT";
    } catch (const std::exception&) {
      // Nothing was written; the session goes on.
    }
  }
  ReadSnapshot(const ReadSnapshot&) = delete;
  ReadSnapshot& operator=(const ReadSnapshot&) = delete;

 private:
  Side& side_;
};

}  // namespace strangler::acl::sync::detail
