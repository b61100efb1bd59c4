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

void pruneChanges(Side& side, const std::string& position) {
  common::Transaction tx(*side.sql, side.backend(), common::Transaction::Mode::kWrite);
  if (side.backend() == DbBackend::kSqlite3) {
    // The newest row stays: without AUTOINCREMENT, SQLite would hand its seq (and those below
    // it) out again once it is gone, below positions readers already hold (change_capture.cpp).
    *side.sql << "DELETE FROM strangler_changes WHERE table_name = :t AND " +
                     atOrBefore(side, position) +
                     " AND seq < (SELECT MAX(seq) FROM strangler_changes)",
        soci::use(side.table);
  } else {
    // Below the snapshot's xmin every transaction had finished: cheap and exact enough (the
    // rest goes with a later prune).
    *side.sql << "DELETE FROM strangler_changes WHERE table_name = :t AND txid < "
                 "pg_snapshot_xmin(" +
                     snapshotLiteral(side, position) + ")::text::bigint",
        soci::use(side.table);
  }
  tx.commit();
}

}  // namespace strangler::acl::sync::detail
