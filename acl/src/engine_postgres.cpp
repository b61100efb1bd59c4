// The sync on PostgreSQL (engine.h). Writers commit in any order, so a change's seq says nothing
// about when it became visible: each change row carries its transaction's id, and a position is
// a snapshot (pg_current_snapshot()) — a reader takes exactly the changes that snapshot sees as
// committed. The triggers know the sync's own writes by a transaction-local setting. Logical
// (WAL) capture is logical_log.cpp.
#include <algorithm>

#include "change_log.h"
#include "engine.h"
#include "row_io_postgres.h"

namespace strangler::acl::sync::detail {
namespace {

class PostgresEngine final : public Engine {
 public:
  void configureSession(soci::session& sql) const override {
    // The sync walks tables by primary key in chunks. Without fresh statistics the planner
    // prefers a full scan and a sort for every chunk (quadratic over a snapshot); on this
    // session only, tell it to walk the index.
    sql << "SET enable_seqscan = off";
    sql << "SET enable_sort = off";
    // The sync never makes the monolith's own transactions wait long: a batch that cannot
    // lock a row at once gives up and is retried (see runOnce).
    sql << "SET lock_timeout = '200ms'";
  }
  bool tableExists(soci::session& sql, const std::string& table) const override {
    int n = 0;
    sql << "SELECT COUNT(*) FROM information_schema.tables WHERE table_name = :n"
           " AND table_schema = current_schema()",
        soci::use(table), soci::into(n);
    return n > 0;
  }
  bool columnExists(soci::session& sql, const std::string& table,
                    const std::string& column) const override {
    int n = 0;
    sql << "SELECT COUNT(*) FROM information_schema.columns WHERE table_name = :t"
           " AND column_name = :c AND table_schema = current_schema()",
        soci::use(table), soci::use(column), soci::into(n);
    return n > 0;
  }
  std::string beginSnapshot() const override {
    return "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY";
  }
  bool integersAsText() const override { return false; }

  std::string changeSeqType() const override { return "BIGSERIAL PRIMARY KEY"; }
  std::string serviceKeyType() const override { return "BIGSERIAL PRIMARY KEY"; }
  std::string realType() const override { return "DOUBLE PRECISION"; }
  std::string bigintType() const override { return "BIGINT"; }

  void indexChangeLog(Side& side) const override {
    *side.sql << "CREATE INDEX IF NOT EXISTS strangler_changes_by_txid ON strangler_changes"
                 " (table_name, txid)";
  }

  void installTriggers(Side& side, const std::string& prefix, bool patient) const override {
    const std::string when_new =
        side.constants.empty() ? "TRUE" : "coalesce(" + side.conditionOn("NEW") + ", FALSE)";
    const std::string when_old =
        side.constants.empty() ? "TRUE" : "coalesce(" + side.conditionOn("OLD") + ", FALSE)";
    // txid_current() is the writing transaction's 64-bit id (pg_current_xact_id() as a bigint,
    // without the round trip through text); date_part yields a double where extract yields a
    // numeric.
    const auto record = [&](const std::string& row, const std::string& op,
                            const std::string& cols) {
      return "INSERT INTO strangler_changes (table_name, pk, op, origin, changed_at, cols, txid)"
             " VALUES ('" +
             side.table + "', " + row + "." + side.key + ", '" + op +
             "', 'app', CAST(date_part('epoch', now()) AS BIGINT), " + cols + ", txid_current());";
    };
    std::string changed;
    for (const auto& c : side.trackedColumns())
      changed += ", CASE WHEN OLD." + c + " IS DISTINCT FROM NEW." + c + " THEN '" + c + "' END";
    const std::string changed_expr = changed.empty() ? "''" : "concat_ws(','" + changed + ")";
    const std::string key_moved = "OLD." + side.key + " IS DISTINCT FROM NEW." + side.key;
    const std::string not_ours = "current_setting('strangler.origin', true) = 'sync'";
    // No lock: the txid in each change row lets the reader take exactly the changes a snapshot
    // sees as committed, whatever order concurrent writers commit in.
    // PL/pgSQL prepares each expression anew in every transaction, and a captured write is
    // usually a transaction of its own: the update path comes first and evaluates as few
    // expressions as it can (the membership and origin tests in one, the changed columns and
    // the whole-row test in another).
    common::Transaction tx(*side.sql, side.backend(), common::Transaction::Mode::kWrite);
    *side.sql << "CREATE OR REPLACE FUNCTION " + prefix +
                     "_capture() RETURNS trigger AS $body$ DECLARE c text; BEGIN"
                     " IF TG_OP = 'UPDATE' THEN"
                     " IF NOT (" +
                     when_new + " OR " + when_old + ") OR " + not_ours +
                     " THEN RETURN NULL; END IF;"
                     " c := CASE WHEN " +
                     key_moved + " OR NOT " + when_new + " OR NOT " + when_old +
                     " THEN NULL ELSE " + changed_expr +
                     " END; IF c = '' THEN RETURN NULL; END IF; " + record("NEW", "U", "c") +
                     " IF " + key_moved + " THEN " + record("OLD", "D", "NULL") +
                     " END IF; RETURN NULL; END IF;"
                     " IF " +
                     not_ours +
                     " THEN RETURN NULL; END IF;"
                     " IF TG_OP = 'DELETE' THEN IF " +
                     when_old + " THEN " + record("OLD", "D", "NULL") +
                     " END IF; RETURN NULL; END IF;"
                     " IF " +
                     when_new + " THEN " + record("NEW", "I", "NULL") +
                     " END IF; RETURN NULL; END $body$ LANGUAGE plpgsql";
    // The trigger itself only when missing: CREATE OR REPLACE TRIGGER locks the monolith's table
    // (a run or watch starting under load would queue its writers); the function above is
    // replaced in place.
    // Creating it takes a lock that an autovacuum of the table holds against it (one starts
    // on a service table a snapshot has just filled: at 10M rows `sync run` failed here). Past
    // deadlock_timeout (1 s by default) PostgreSQL cancels an autovacuum that blocks a lock
    // request, so a patient attempt (installCapture() retrying) waits 2 s, not 200 ms.
    if (patient) *side.sql << "SET LOCAL lock_timeout = '2s'";
    if (!triggerExists(side, prefix))
      *side.sql << "CREATE OR REPLACE TRIGGER " + prefix +
                       "_capture AFTER INSERT OR UPDATE OR DELETE ON " + side.table +
                       " FOR EACH ROW EXECUTE FUNCTION " + prefix + "_capture()";
    tx.commit();
  }

  std::vector<std::string> dropTriggers(Side& side, const std::string& prefix) const override {
    std::vector<std::string> dropped;
    if (triggerExists(side, prefix)) {
      *side.sql << "DROP TRIGGER " + prefix + "_capture ON " + side.table;
      dropped.push_back("trigger " + prefix + "_capture");
    }
    int n = 0;
    *side.sql << "SELECT COUNT(*) FROM pg_proc WHERE pronamespace ="
                 " current_schema()::regnamespace AND proname = '" +
                     prefix + "_capture'",
        soci::into(n);
    if (n > 0) {
      *side.sql << "DROP FUNCTION " + prefix + "_capture()";
      dropped.push_back("function " + prefix + "_capture()");
    }
    return dropped;
  }

  void markApplying(Side& side) const override {
    *side.sql << "SET LOCAL strangler.origin = 'sync'";
    // With logical capture the WAL carries this message in the transaction: the decoder skips
    // the transaction's changes.
    if (side.logical) *side.sql << "SELECT pg_logical_emit_message(true, 'strangler-sync', '')";
  }
  void unmarkApplying(Side&) const override {}  // SET LOCAL ends with the transaction

  void lockRows(Side& side, const std::string& key_list) const override {
    *side.sql << "SELECT COUNT(*) FROM (SELECT " + side.key + " FROM " + side.table + " WHERE " +
                     side.key + " IN (" + key_list + ") ORDER BY " + side.key +
                     " FOR UPDATE) locked";
  }

  // A snapshot as pg_current_snapshot() prints it: xmin:xmax:xip,xip,...
  bool validPosition(const std::string& position) const override {
    if (position.empty()) return false;
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
  std::string currentPosition(Side& side) const override {
    std::string snapshot;
    *side.sql << "SELECT pg_current_snapshot()::text", soci::into(snapshot);
    return snapshot;
  }
  std::string laterOf(const std::string&, const std::string& now) const override { return now; }
  // Transactions below the snapshot's xmin are all visible in it: the range test lets the
  // planner use the (table_name, txid) index before the exact test.
  std::string atOrBefore(const std::string& position) const override {
    return "(txid < pg_snapshot_xmax(" + literal(position) + ")::text::bigint AND " +
           visibleIn(position) + ")";
  }
  std::string notCovered(const Checkpoint& checkpoint) const override {
    std::string condition = "(txid >= pg_snapshot_xmin(" + literal(checkpoint.position) +
                            ")::text::bigint AND NOT " + visibleIn(checkpoint.position);
    if (checkpoint.window_to) {
      condition += " AND NOT (" + visibleIn(*checkpoint.window_to) +
                   " AND seq <= " + std::to_string(checkpoint.window_seq) + ")";
    }
    return condition + ")";
  }
  std::string after(const std::string& from) const override {
    return notCovered(Checkpoint{from, std::nullopt, 0});
  }
  // Below the snapshot's xmin every transaction had finished: cheap and exact enough (the rest
  // goes with a later prune).
  std::string prunable(const std::string& position, std::optional<int64_t> floor) const override {
    std::string condition = "txid < pg_snapshot_xmin(" + literal(position) + ")::text::bigint";
    if (floor) condition += " AND txid < " + std::to_string(*floor);
    return condition;
  }
  // The xmin of the reader's snapshot: transactions below it are visible in it, so read.
  int64_t readerBound(const std::string& position) const override {
    return std::stoll(position.substr(0, position.find(':')));
  }
  std::string keepInLog() const override { return ""; }
  // The stream starts over from now.
  std::string positionFromSeq(Side& side, int64_t) const override { return currentPosition(side); }

  KeyDefault keyDefault(Side& side) const override {
    std::string column_default, identity;
    soci::indicator default_ind = soci::i_null;
    *side.sql << "SELECT COALESCE(column_default, ''), is_identity FROM"
                 " information_schema.columns WHERE table_name = :t AND column_name = :c AND"
                 " table_schema = current_schema()",
        soci::use(side.table), soci::use(side.key), soci::into(column_default, default_ind),
        soci::into(identity);
    const bool sequence = identity == "YES" || lowerCase(column_default).rfind("nextval(", 0) == 0;
    return {sequence, sequence};
  }
  int64_t insertAllocating(Side& side, const std::string& columns,
                           const std::string& values) const override {
    long long key = 0;
    *side.sql << "INSERT INTO " + side.table + " (" + columns + ") VALUES (" + values +
                     ") RETURNING " + side.key,
        soci::into(key);
    return key;
  }
  void setNextKey(Side& side, int64_t floor) const override {
    *side.sql << "SELECT setval(pg_get_serial_sequence('" + side.table + "', '" + side.key +
                     "'), " + std::to_string(floor) + ")";
  }

  std::unique_ptr<ChunkSource> chunkSource(Side& side, std::vector<Cls> classes,
                                           std::size_t key_column, int64_t chunk) const override {
    return std::make_unique<SociChunkSource>(side, std::move(classes), key_column, chunk);
  }
  std::unique_ptr<RowSink> rowSink(Side& side, std::vector<Cls> classes,
                                   const std::set<std::string>* updated) const override {
    return std::make_unique<PostgresRowSink>(side, side.writeColumns(), std::move(classes),
                                             updated);
  }
  void afterBulkLoad(Side&) const override {}

  // Two candidates can read "free" at once: the row lock decides.
  void lockLease(Side& side, const std::string& mapping) const override {
    *side.sql << "INSERT INTO strangler_sync_lease (mapping, holder, expires_at_ms) VALUES"
                 " (:m, '', 0) ON CONFLICT (mapping) DO NOTHING",
        soci::use(mapping);
    *side.sql << "SELECT 1 FROM strangler_sync_lease WHERE mapping = :m FOR UPDATE",
        soci::use(mapping);
  }
  bool hasLogicalDecoding() const override { return true; }

 private:
  std::string literal(const std::string& position) const {
    if (!validPosition(position))
      throw soci::soci_error("invalid change log position '" + position + "'");
    return "'" + position + "'::pg_snapshot";
  }
  std::string visibleIn(const std::string& position) const {
    return "pg_visible_in_snapshot(txid::text::xid8, " + literal(position) + ")";
  }
  static bool triggerExists(Side& side, const std::string& prefix) {
    int present = 0;
    *side.sql << "SELECT COUNT(*) FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid"
                 " WHERE c.relnamespace = current_schema()::regnamespace AND t.tgname = '" +
                     prefix + "_capture'",
        soci::into(present);
    return present > 0;
  }
};

}  // namespace

const Engine& postgresEngine() {
  static const PostgresEngine engine;
  return engine;
}

}  // namespace strangler::acl::sync::detail
