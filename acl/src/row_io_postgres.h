#pragma once
// PostgreSQL's bulk writes: binary COPY (row_io.h has the interfaces).

#include <soci/postgresql/soci-postgresql.h>

#include <string>
#include <vector>

#include "row_io.h"

namespace strangler::acl::sync::detail {

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

}  // namespace strangler::acl::sync::detail
