#pragma once
// Reading and writing a side's mapped rows in bulk: typed column vectors, the chunk source and
// row sink interfaces, and the SOCI chunk source any engine can use. Each engine's own fast
// paths are in row_io_<engine>.h (row_io_sqlite.h: native reads and prepared multi-row upserts;
// row_io_postgres.h: binary COPY). A new engine adds its file and a case in
// SyncEngine::Impl::sourceFor/sinkFor. Private to the sync's sources.

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
    // Walk the primary key (whereConstants() keeps the planner off the constants' indexes).
    std::string where = side.whereConstants();
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
    std::string where = side_.key + " IN (" + keyList(keys) + ")";
    if (!side_.constants.empty()) where += " AND " + side_.whereConstants();
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

}  // namespace strangler::acl::sync::detail
