// The sync on SQLite (engine.h). The change log's seq is a rowid: SQLite runs one write
// transaction at a time, so a change with a larger seq committed later, and a position is simply
// the largest seq read. The triggers know the sync's own writes by a row in strangler_applying
// that only the sync's transaction sees.
#include <algorithm>

#include "change_log.h"
#include "engine.h"
#include "row_io_sqlite.h"

namespace strangler::acl::sync::detail {
namespace {

class SqliteEngine final : public Engine {
 public:
  void configureSession(soci::session&) const override {
    // common::openSession already sets WAL, the busy timeout and foreign keys.
  }
  bool tableExists(soci::session& sql, const std::string& table) const override {
    int n = 0;
    sql << "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name = :n",
        soci::use(table), soci::into(n);
    return n > 0;
  }
  bool columnExists(soci::session& sql, const std::string& table,
                    const std::string& column) const override {
    int n = 0;
    sql << "SELECT COUNT(*) FROM pragma_table_info('" + table + "') WHERE name = :c",
        soci::use(column), soci::into(n);
    return n > 0;
  }
  // WAL mode: a read transaction keeps the snapshot of its first read.
  std::string beginSnapshot() const override { return "BEGIN"; }
  bool integersAsText() const override { return true; }

  // A plain rowid, not AUTOINCREMENT, which rewrites sqlite_sequence's page in every captured
  // transaction. A rowid is only reused after the newest row is deleted, and nothing deletes it
  // (keepInLog()), so seq still only grows. (Tables created with AUTOINCREMENT by earlier
  // versions keep it and work as before.)
  std::string changeSeqType() const override { return "INTEGER PRIMARY KEY"; }
  std::string serviceKeyType() const override { return "INTEGER PRIMARY KEY AUTOINCREMENT"; }
  std::string realType() const override { return "REAL"; }
  std::string bigintType() const override { return "INTEGER"; }

  void indexChangeLog(Side&) const override {}

  void installTriggers(Side& side, const std::string& prefix, bool) const override {
    const std::string filter_new = side.conditionOn("NEW");
    const std::string filter_old = side.conditionOn("OLD");
    const std::string now = "CAST(strftime('%s', 'now') AS INTEGER)";
    const std::string not_sync = "NOT EXISTS (SELECT 1 FROM strangler_applying)";
    const std::string insert =
        "INSERT INTO strangler_changes (table_name, pk, op, origin, changed_at, cols, txid) ";
    const auto whole = [&](const std::string& row, const std::string& op) {
      return insert + "VALUES ('" + side.table + "', " + row + "." + side.key + ", '" + op +
             "', 'app', " + now + ", NULL, 0);";
    };
    std::string changed;
    for (const auto& c : side.trackedColumns())
      changed += (changed.empty() ? "" : " || ") + std::string("CASE WHEN OLD.") + c +
                 " IS NOT NEW." + c + " THEN '" + c + ",' ELSE '' END";
    if (changed.empty()) changed = "''";
    // A key change, or a row entering or leaving the mapping's constants, is a whole-row change.
    std::string whole_row = "OLD." + side.key + " IS NOT NEW." + side.key;
    if (!filter_new.empty())
      whole_row += " OR NOT coalesce(" + filter_new + ", 0) OR NOT coalesce(" + filter_old + ", 0)";
    const std::string when_any = filter_new.empty()
                                     ? not_sync
                                     : "(" + filter_new + " OR " + filter_old + ") AND " + not_sync;
    common::Transaction tx(*side.sql, side.backend(), common::Transaction::Mode::kWrite);
    for (const char* suffix : {"_ins", "_upd", "_del"})
      *side.sql << "DROP TRIGGER IF EXISTS " + prefix + suffix;
    *side.sql << "CREATE TRIGGER " + prefix + "_ins AFTER INSERT ON " + side.table + " WHEN " +
                     (filter_new.empty() ? "" : filter_new + " AND ") + not_sync + " BEGIN " +
                     whole("NEW", "I") + " END";
    *side.sql << "CREATE TRIGGER " + prefix + "_upd AFTER UPDATE ON " + side.table + " WHEN " +
                     when_any + " BEGIN " + insert + "SELECT '" + side.table + "', NEW." +
                     side.key + ", 'U', 'app', " + now + ", c, 0 FROM (SELECT CASE WHEN " +
                     whole_row + " THEN NULL ELSE " + changed +
                     " END AS c) WHERE c IS NULL OR c <> ''; " + insert + "SELECT '" + side.table +
                     "', OLD." + side.key + ", 'D', 'app', " + now + ", NULL, 0 WHERE OLD." +
                     side.key + " IS NOT NEW." + side.key + "; END";
    *side.sql << "CREATE TRIGGER " + prefix + "_del AFTER DELETE ON " + side.table + " WHEN " +
                     (filter_old.empty() ? "" : filter_old + " AND ") + not_sync + " BEGIN " +
                     whole("OLD", "D") + " END";
    tx.commit();
  }

  std::vector<std::string> dropTriggers(Side& side, const std::string& prefix) const override {
    std::vector<std::string> dropped;
    for (const char* suffix : {"_ins", "_upd", "_del"}) {
      int n = 0;
      *side.sql << "SELECT COUNT(*) FROM sqlite_master WHERE type = 'trigger' AND name = '" +
                       prefix + suffix + "'",
          soci::into(n);
      if (n == 0) continue;
      *side.sql << "DROP TRIGGER " + prefix + suffix;
      dropped.push_back("trigger " + prefix + suffix);
    }
    return dropped;
  }

  // SQLite has no session variables: a row here, inside the sync's own transaction, tells the
  // triggers the write is the sync's (other transactions never see it).
  void markApplying(Side& side) const override {
    *side.sql << "INSERT INTO strangler_applying (marker) VALUES (1)";
  }
  void unmarkApplying(Side& side) const override { *side.sql << "DELETE FROM strangler_applying"; }
  // One writer at a time: the write transaction already excludes every other.
  void lockRows(Side&, const std::string&) const override {}

  bool validPosition(const std::string& position) const override {
    if (position.empty()) return false;
    return std::all_of(position.begin(), position.end(),
                       [](char c) { return c >= '0' && c <= '9'; });
  }
  std::string currentPosition(Side& side) const override {
    return std::to_string(side.scalar("SELECT MAX(seq) FROM strangler_changes"));
  }
  // MAX(seq) falls back when the log was emptied; a position never moves back.
  std::string laterOf(const std::string& earlier, const std::string& now) const override {
    return std::stoll(now) < std::stoll(earlier) ? earlier : now;
  }
  std::string atOrBefore(const std::string& position) const override {
    return "seq <= " + checked(position);
  }
  std::string notCovered(const Checkpoint& checkpoint) const override {
    int64_t through = std::stoll(checked(checkpoint.position));
    if (checkpoint.window_to) through = std::max(through, checkpoint.window_seq);
    return "seq > " + std::to_string(through);
  }
  std::string after(const std::string& from) const override { return "seq > " + checked(from); }
  std::string prunable(const std::string& position, std::optional<int64_t> floor) const override {
    std::string condition = atOrBefore(position);
    if (floor) condition += " AND seq <= " + std::to_string(*floor);
    return condition;
  }
  int64_t readerBound(const std::string& position) const override { return std::stoll(position); }
  std::string keepInLog() const override {
    return "seq < (SELECT MAX(seq) FROM strangler_changes)";
  }
  std::string positionFromSeq(Side&, int64_t last_seq) const override {
    return std::to_string(last_seq);
  }

  // An INTEGER PRIMARY KEY is the rowid: it allocates by itself (from the largest key, or past
  // every key ever used with AUTOINCREMENT).
  KeyDefault keyDefault(Side& side) const override {
    std::string type;
    int pk_columns = 0;
    *side.sql << "SELECT COUNT(*) FROM pragma_table_info('" + side.table + "') WHERE pk > 0",
        soci::into(pk_columns);
    *side.sql << "SELECT type FROM pragma_table_info('" + side.table + "') WHERE name = :c",
        soci::use(side.key), soci::into(type);
    return {pk_columns == 1 && lowerCase(type) == "integer", false};
  }
  int64_t insertAllocating(Side& side, const std::string& columns,
                           const std::string& values) const override {
    *side.sql << "INSERT INTO " + side.table + " (" + columns + ") VALUES (" + values + ")";
    return side.scalar("SELECT last_insert_rowid()");
  }
  void setNextKey(Side& side, int64_t floor) const override {
    *side.sql << "DELETE FROM sqlite_sequence WHERE name = '" + side.table + "'";
    *side.sql << "INSERT INTO sqlite_sequence (name, seq) VALUES ('" + side.table + "', " +
                     std::to_string(floor) + ")";
  }

  std::unique_ptr<ChunkSource> chunkSource(Side& side, std::vector<Cls>, std::size_t key_column,
                                           int64_t chunk) const override {
    return std::make_unique<SqliteChunkSource>(side, key_column, chunk);
  }
  std::unique_ptr<RowSink> rowSink(Side& side, std::vector<Cls>,
                                   const std::set<std::string>* updated) const override {
    return std::make_unique<SqliteRowSink>(side, side.writeColumns(), updated);
  }
  // A bulk load leaves a large write-ahead log; fold it in now rather than in the middle of the
  // stream, where a checkpoint would stall the first applies.
  void afterBulkLoad(Side& side) const override { *side.sql << "PRAGMA wal_checkpoint(TRUNCATE)"; }

  void lockLease(Side&, const std::string&) const override {}
  bool hasLogicalDecoding() const override { return false; }

 private:
  std::string checked(const std::string& position) const {
    if (!validPosition(position))
      throw soci::soci_error("invalid change log position '" + position + "'");
    return position;
  }
};

}  // namespace

const Engine& sqliteEngine() {
  static const SqliteEngine engine;
  return engine;
}

}  // namespace strangler::acl::sync::detail
