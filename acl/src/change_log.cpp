#include "change_log.h"

#include <algorithm>
#include <stdexcept>

namespace strangler::acl::sync::detail {
namespace {

std::string snapshotLiteral(const Side& side, const std::string& position) {
  if (!validPosition(side, position))
    throw soci::soci_error("invalid change log position '" + position + "'");
  return "'" + position + "'::pg_snapshot";
}

std::string visibleIn(const Side& side, const std::string& position) {
  return "pg_visible_in_snapshot(txid::text::xid8, " + snapshotLiteral(side, position) + ")";
}

}  // namespace

bool validPosition(const Side& side, const std::string& position) {
  if (position.empty()) return false;
  if (side.backend() == DbBackend::kSqlite3) {
    for (char c : position)
      if (c < '0' || c > '9') return false;
    return true;
  }
  int colons = 0;
  for (char c : position) {
    if (c == ':') {
      ++colons;
    } else if ((c < '0' || c > '9') && c != ',') {
      return false;
    }
  }
  return colons == 2;
}

std::string currentPosition(Side& side) {
  if (side.backend() == DbBackend::kSqlite3) {
    return std::to_string(side.scalar("SELECT MAX(seq) FROM strangler_changes"));
  }
  std::string snapshot;
  *side.sql << "SELECT pg_current_snapshot()::text", soci::into(snapshot);
  return snapshot;
}

std::string atOrBefore(const Side& side, const std::string& position) {
  if (side.backend() == DbBackend::kSqlite3) {
    if (!validPosition(side, position))
      throw soci::soci_error("invalid change log position '" + position + "'");
    return "seq <= " + position;
  }
  // Transactions below the snapshot's xmin are all visible in it: the range test lets the
  // planner use the (table_name, txid) index before the exact test.
  return "(txid < pg_snapshot_xmax(" + snapshotLiteral(side, position) + ")::text::bigint AND " +
         visibleIn(side, position) + ")";
}

std::string notCovered(const Side& side, const Checkpoint& checkpoint) {
  if (side.backend() == DbBackend::kSqlite3) {
    int64_t through = std::stoll(checkpoint.position);
    if (checkpoint.window_to) through = std::max(through, checkpoint.window_seq);
    return "seq > " + std::to_string(through);
  }
  std::string condition = "(txid >= pg_snapshot_xmin(" +
                          snapshotLiteral(side, checkpoint.position) + ")::text::bigint AND NOT " +
                          visibleIn(side, checkpoint.position);
  if (checkpoint.window_to) {
    condition += " AND NOT (" + visibleIn(side, *checkpoint.window_to) +
                 " AND seq <= " + std::to_string(checkpoint.window_seq) + ")";
  }
  return condition + ")";
}

std::vector<ChangeRow> readWindow(Side& side, const std::string& from, const std::string& to,
                                  int64_t after_seq, int64_t limit) {
  std::string where = "table_name = :t AND seq > :a AND " + atOrBefore(side, to);
  if (side.backend() == DbBackend::kSqlite3) {
    where += " AND seq > " + from;
    if (!validPosition(side, from)) throw soci::soci_error("invalid position '" + from + "'");
  } else {
    where += " AND " + notCovered(side, Checkpoint{from, std::nullopt, 0});
  }
  std::vector<ChangeRow> rows;
  long long seq = 0, pk = 0, changed_at = 0;
  std::string op, cols;
  soci::indicator cols_ind = soci::i_null;
  const long long after = after_seq;
  const long long max_rows = limit;
  soci::statement st =
      (side.sql->prepare << "SELECT seq, pk, op, changed_at, cols FROM"
                            " strangler_changes WHERE " +
                                where + " ORDER BY seq LIMIT :l",
       soci::use(side.table), soci::use(after), soci::use(max_rows), soci::into(seq),
       soci::into(pk), soci::into(op), soci::into(changed_at), soci::into(cols, cols_ind));
  st.execute();
  while (st.fetch()) {
    ChangeRow row;
    row.seq = seq;
    row.pk = pk;
    row.op = op;
    row.changed_at = changed_at;
    if (cols_ind == soci::i_ok) row.cols = cols;
    rows.push_back(std::move(row));
  }
  return rows;
}

namespace {

// The oldest position live readers have read through, as a bound on what may be deleted:
// SQLite, a seq (changes at or below it are read); PostgreSQL, the xmin of the reader's snapshot
// (transactions below it are visible in the snapshot, so read). Removes expired registrations.
std::optional<int64_t> readersFloor(Side& side) {
  if (!side.tableExists("strangler_readers")) return std::nullopt;
  const long long now = nowSeconds();
  *side.sql << "DELETE FROM strangler_readers WHERE expires_at < :n", soci::use(now);
  std::optional<int64_t> floor;
  std::string position;
  soci::statement st = (side.sql->prepare << "SELECT position FROM strangler_readers WHERE"
                                             " table_name = :t",
                        soci::use(side.table), soci::into(position));
  st.execute();
  while (st.fetch()) {
    // A malformed row (not written by a reader) holds nothing back.
    if (!validPosition(side, position)) continue;
    int64_t bound = 0;
    try {
      bound = std::stoll(position.substr(0, position.find(':')));
    } catch (const std::exception&) {
      continue;
    }
    floor = floor ? std::min(*floor, bound) : bound;
  }
  return floor;
}

}  // namespace

void pruneChanges(Side& side, const std::string& position) {
  common::Transaction tx(*side.sql, side.backend(), common::Transaction::Mode::kWrite);
  const auto floor = readersFloor(side);
  if (side.backend() == DbBackend::kSqlite3) {
    // The newest row stays: without AUTOINCREMENT, SQLite would hand its seq (and those below
    // it) out again once it is gone, below positions readers already hold (change_capture.cpp).
    std::string condition =
        atOrBefore(side, position) + " AND seq < (SELECT MAX(seq) FROM strangler_changes)";
    if (floor) condition += " AND seq <= " + std::to_string(*floor);
    *side.sql << "DELETE FROM strangler_changes WHERE table_name = :t AND " + condition,
        soci::use(side.table);
  } else {
    // Below the snapshot's xmin every transaction had finished: cheap and exact enough (the
    // rest goes with a later prune).
    std::string condition =
        "txid < pg_snapshot_xmin(" + snapshotLiteral(side, position) + ")::text::bigint";
    if (floor) condition += " AND txid < " + std::to_string(*floor);
    *side.sql << "DELETE FROM strangler_changes WHERE table_name = :t AND " + condition,
        soci::use(side.table);
  }
  tx.commit();
}

void registerReader(Side& side, const std::string& reader, const std::string& position, int ttl_s) {
  if (!validPosition(side, position))
    throw soci::soci_error("invalid change log position '" + position + "'");
  const long long expires = nowSeconds() + ttl_s;
  common::Transaction tx(*side.sql, side.backend(), common::Transaction::Mode::kWrite);
  *side.sql << "CREATE TABLE IF NOT EXISTS strangler_readers (reader VARCHAR(200) PRIMARY KEY,"
               " table_name VARCHAR(63) NOT NULL, position TEXT NOT NULL,"
               " expires_at BIGINT NOT NULL)";
  *side.sql << "INSERT INTO strangler_readers (reader, table_name, position, expires_at) VALUES"
               " (:r, :t, :p, :e) ON CONFLICT (reader) DO UPDATE SET table_name ="
               " excluded.table_name, position = excluded.position, expires_at ="
               " excluded.expires_at",
      soci::use(reader), soci::use(side.table), soci::use(position), soci::use(expires);
  tx.commit();
}

bool renewReader(Side& side, const std::string& reader, const std::string& position, int ttl_s) {
  if (!validPosition(side, position))
    throw soci::soci_error("invalid change log position '" + position + "'");
  const long long expires = nowSeconds() + ttl_s;
  common::Transaction tx(*side.sql, side.backend(), common::Transaction::Mode::kWrite);
  soci::statement st = (side.sql->prepare << "UPDATE strangler_readers SET position = :p,"
                                             " expires_at = :e WHERE reader = :r",
                        soci::use(position), soci::use(expires), soci::use(reader));
  st.execute(true);
  const bool found = st.get_affected_rows() > 0;
  tx.commit();
  return found;
}

void unregisterReader(Side& side, const std::string& reader) {
  if (!side.tableExists("strangler_readers")) return;
  *side.sql << "DELETE FROM strangler_readers WHERE reader = :r", soci::use(reader);
}

}  // namespace strangler::acl::sync::detail
