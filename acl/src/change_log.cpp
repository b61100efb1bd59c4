#include "change_log.h"

#include <algorithm>
#include <stdexcept>

namespace strangler::acl::sync::detail {

bool validPosition(const Side& side, const std::string& position) {
  return side.engine().validPosition(position);
}

std::string currentPosition(Side& side) {
  return side.engine().currentPosition(side);
}

std::string atOrBefore(const Side& side, const std::string& position) {
  return side.engine().atOrBefore(position);
}

std::string notCovered(const Side& side, const Checkpoint& checkpoint) {
  return side.engine().notCovered(checkpoint);
}

std::vector<ChangeRow> readWindow(Side& side, const std::string& from, const std::string& to,
                                  int64_t after_seq, int64_t limit) {
  const std::string where = "table_name = :t AND seq > :a AND " + atOrBefore(side, to) + " AND " +
                            side.engine().after(from);
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
      bound = side.engine().readerBound(position);
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
  std::string condition = side.engine().prunable(position, floor);
  if (const auto keep = side.engine().keepInLog(); !keep.empty()) condition += " AND " + keep;
  *side.sql << "DELETE FROM strangler_changes WHERE table_name = :t AND " + condition,
      soci::use(side.table);
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
  return renewReaderOn(*side.sql, side.backend(), reader, position, ttl_s);
}

bool renewReaderOn(soci::session& sql, DbBackend backend, const std::string& reader,
                   const std::string& position, int ttl_s) {
  const long long expires = nowSeconds() + ttl_s;
  common::Transaction tx(sql, backend, common::Transaction::Mode::kWrite);
  soci::statement st = (sql.prepare << "UPDATE strangler_readers SET position = :p,"
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
