#include "change_capture.h"

namespace strangler::acl::sync::detail {
namespace {

// The columns an update can change: the side's mapped columns; the constants decide membership.
std::vector<std::string> trackedColumns(const Side& side) {
  std::vector<std::string> tracked;
  for (const auto& c : side.columns)
    if (c != side.key) tracked.push_back(c);
  return tracked;
}

std::string triggerPrefix(const Side& side, const std::string& mapping) {
  return "strangler_" + mapping + "_" + side.table;
}

void installSqlite(Side& side, const std::string& mapping) {
  const std::string prefix = triggerPrefix(side, mapping);
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
  for (const auto& c : trackedColumns(side))
    changed += (changed.empty() ? "" : " || ") + std::string("CASE WHEN OLD.") + c +
               " IS NOT NEW." + c + " THEN '" + c + ",' ELSE '' END";
  if (changed.empty()) changed = "''";
  // A key change, or a row entering or leaving the mapping's constants, is a whole-row change.
  std::string whole_row = "OLD." + side.key + " IS NOT NEW." + side.key;
  if (!filter_new.empty())
    whole_row += " OR NOT coalesce(" + filter_new + ", 0) OR NOT coalesce(" + filter_old + ", 0)";
  const std::string when_any =
      filter_new.empty() ? not_sync : "(" + filter_new + " OR " + filter_old + ") AND " + not_sync;
  common::Transaction tx(*side.sql, side.backend(), common::Transaction::Mode::kWrite);
  for (const char* suffix : {"_ins", "_upd", "_del"})
    *side.sql << "DROP TRIGGER IF EXISTS " + prefix + suffix;
  *side.sql << "CREATE TRIGGER " + prefix + "_ins AFTER INSERT ON " + side.table + " WHEN " +
                   (filter_new.empty() ? "" : filter_new + " AND ") + not_sync + " BEGIN " +
                   whole("NEW", "I") + " END";
  *side.sql << "CREATE TRIGGER " + prefix + "_upd AFTER UPDATE ON " + side.table + " WHEN " +
                   when_any + " BEGIN " + insert + "SELECT '" + side.table + "', NEW." + side.key +
                   ", 'U', 'app', " + now + ", c, 0 FROM (SELECT CASE WHEN " + whole_row +
                   " THEN NULL ELSE " + changed + " END AS c) WHERE c IS NULL OR c <> ''; " +
                   insert + "SELECT '" + side.table + "', OLD." + side.key + ", 'D', 'app', " +
                   now + ", NULL, 0 WHERE OLD." + side.key + " IS NOT NEW." + side.key + "; END";
  *side.sql << "CREATE TRIGGER " + prefix + "_del AFTER DELETE ON " + side.table + " WHEN " +
                   (filter_old.empty() ? "" : filter_old + " AND ") + not_sync + " BEGIN " +
                   whole("OLD", "D") + " END";
  tx.commit();
}

void installPostgres(Side& side, const std::string& mapping) {
  const std::string prefix = triggerPrefix(side, mapping);
  const std::string when_new =
      side.constants.empty() ? "TRUE" : "coalesce(" + side.conditionOn("NEW") + ", FALSE)";
  const std::string when_old =
      side.constants.empty() ? "TRUE" : "coalesce(" + side.conditionOn("OLD") + ", FALSE)";
  // txid_current() is the writing transaction's 64-bit id (pg_current_xact_id() as a bigint,
  // without the round trip through text); date_part yields a double where extract yields a
  // numeric.
  const auto record = [&](const std::string& row, const std::string& op, const std::string& cols) {
    return "INSERT INTO strangler_changes (table_name, pk, op, origin, changed_at, cols, txid)"
           " VALUES ('" +
           side.table + "', " + row + "." + side.key + ", '" + op +
           "', 'app', CAST(date_part('epoch', now()) AS BIGINT), " + cols + ", txid_current());";
  };
  std::string changed;
  for (const auto& c : trackedColumns(side))
    changed += ", CASE WHEN OLD." + c + " IS DISTINCT FROM NEW." + c + " THEN '" + c + "' END";
  const std::string changed_expr = changed.empty() ? "''" : "concat_ws(','" + changed + ")";
  const std::string key_moved = "OLD." + side.key + " IS DISTINCT FROM NEW." + side.key;
  const std::string not_ours = "current_setting('strangler.origin', true) = 'sync'";
  // No lock: the txid in each change row lets the reader take exactly the changes a snapshot
  // sees as committed (change_log.cpp), whatever order concurrent writers commit in.
  // PL/pgSQL prepares each expression anew in every transaction, and a captured write is
  // usually a transaction of its own: the update path comes first and evaluates as few
  // expressions as it can (the membership and origin tests in one, the changed columns and the
  // whole-row test in another).
  common::Transaction tx(*side.sql, side.backend(), common::Transaction::Mode::kWrite);
  *side.sql << "CREATE OR REPLACE FUNCTION " + prefix +
                   "_capture() RETURNS trigger AS $body$ DECLARE c text; BEGIN"
                   " IF TG_OP = 'UPDATE' THEN"
                   " IF NOT (" +
                   when_new + " OR " + when_old + ") OR " + not_ours +
                   " THEN RETURN NULL; END IF;"
                   " c := CASE WHEN " +
                   key_moved + " OR NOT " + when_new + " OR NOT " + when_old + " THEN NULL ELSE " +
                   changed_expr + " END; IF c = '' THEN RETURN NULL; END IF; " +
                   record("NEW", "U", "c") + " IF " + key_moved + " THEN " +
                   record("OLD", "D", "NULL") +
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
  int present = 0;
  *side.sql << "SELECT COUNT(*) FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid"
               " WHERE c.relnamespace = current_schema()::regnamespace AND t.tgname = '" +
                   prefix + "_capture'",
      soci::into(present);
  if (present == 0)
    *side.sql << "CREATE OR REPLACE TRIGGER " + prefix +
                     "_capture AFTER INSERT OR UPDATE OR DELETE ON " + side.table +
                     " FOR EACH ROW EXECUTE FUNCTION " + prefix + "_capture()";
  tx.commit();
}

}  // namespace

void ensureSyncTables(Side& side) {
  const bool sqlite = side.backend() == DbBackend::kSqlite3;
  // SQLite: a plain rowid, not AUTOINCREMENT, which rewrites sqlite_sequence's page in every
  // captured transaction. A rowid is only reused after the newest row is deleted, and
  // pruneChanges never deletes it, so seq still only grows. (Tables created with AUTOINCREMENT
  // by earlier versions keep it and work as before.)
  const std::string serial = sqlite ? "INTEGER PRIMARY KEY" : "BIGSERIAL PRIMARY KEY";
  common::Transaction tx(*side.sql, side.backend(), common::Transaction::Mode::kWrite);
  // cols: the mapped columns an update changed (NULL: the whole row); txid: the writing
  // transaction (PostgreSQL), which decides when a reader may take the change.
  *side.sql << "CREATE TABLE IF NOT EXISTS strangler_changes (seq " + serial +
                   ", table_name VARCHAR(63) NOT NULL, pk BIGINT NOT NULL, op CHAR(1) NOT NULL,"
                   " origin VARCHAR(8) NOT NULL, changed_at BIGINT NOT NULL, cols TEXT,"
                   " txid BIGINT NOT NULL DEFAULT 0)";
  side.addColumnIfMissing("strangler_changes", "cols", "TEXT");
  side.addColumnIfMissing("strangler_changes", "txid", "BIGINT NOT NULL DEFAULT 0");
  // No (table_name, seq) index: every captured write paid for it, and the readers' seq ranges
  // and order come from the primary key (the log holds few tables, and is pruned). Earlier
  // versions created it.
  *side.sql << "DROP INDEX IF EXISTS strangler_changes_by_table";
  if (!sqlite) {
    *side.sql << "CREATE INDEX IF NOT EXISTS strangler_changes_by_txid ON strangler_changes"
                 " (table_name, txid)";
  }
  // SQLite has no session variables: a row here, inside the sync's own transaction, tells the
  // triggers the write is the sync's (other transactions never see it).
  *side.sql << "CREATE TABLE IF NOT EXISTS strangler_applying (marker INTEGER)";
  *side.sql
      << "CREATE TABLE IF NOT EXISTS strangler_sync_state (mapping VARCHAR(63) NOT NULL,"
         " direction VARCHAR(8) NOT NULL, phase VARCHAR(8) NOT NULL, last_key BIGINT,"
         " stream_from BIGINT NOT NULL, last_seq BIGINT NOT NULL, rows_copied BIGINT NOT NULL,"
         " changes_applied BIGINT NOT NULL, updated_at BIGINT NOT NULL,"
         " PRIMARY KEY (mapping, direction))";
  // position: the change log position applied through; window_to/window_seq: the window being
  // applied, and the last change of it applied (change_log.h).
  side.addColumnIfMissing("strangler_sync_state", "position", "TEXT");
  side.addColumnIfMissing("strangler_sync_state", "window_to", "TEXT");
  side.addColumnIfMissing("strangler_sync_state", "window_seq", "BIGINT");
  side.addColumnIfMissing("strangler_sync_state", "capture", "VARCHAR(16)");
  *side.sql << "CREATE TABLE IF NOT EXISTS strangler_dead_letters (mapping VARCHAR(63) NOT NULL,"
               " direction VARCHAR(8) NOT NULL, pk BIGINT NOT NULL, reason VARCHAR(1000) NOT NULL,"
               " row_text VARCHAR(4000) NOT NULL, created_at BIGINT NOT NULL,"
               " PRIMARY KEY (mapping, direction, pk))";
  *side.sql << "CREATE TABLE IF NOT EXISTS strangler_sync_owner (mapping VARCHAR(63) PRIMARY KEY,"
               " owner VARCHAR(16) NOT NULL, changed_at BIGINT NOT NULL)";
  side.addColumnIfMissing("strangler_sync_owner", "fence", "TEXT");
  *side.sql << "CREATE TABLE IF NOT EXISTS strangler_sync_lease (mapping VARCHAR(63) PRIMARY KEY,"
               " holder VARCHAR(200) NOT NULL, expires_at_ms BIGINT NOT NULL)";
  tx.commit();
}

void installCapture(Side& side, const std::string& mapping) {
  if (side.backend() == DbBackend::kSqlite3) {
    installSqlite(side, mapping);
  } else {
    installPostgres(side, mapping);
  }
}

std::vector<std::string> uninstallCapture(Side& side, const std::string& mapping) {
  const std::string prefix = triggerPrefix(side, mapping);
  std::vector<std::string> dropped;
  common::Transaction tx(*side.sql, side.backend(), common::Transaction::Mode::kWrite);
  if (side.backend() == DbBackend::kSqlite3) {
    for (const char* suffix : {"_ins", "_upd", "_del"}) {
      int n = 0;
      *side.sql << "SELECT COUNT(*) FROM sqlite_master WHERE type = 'trigger' AND name = '" +
                       prefix + suffix + "'",
          soci::into(n);
      if (n == 0) continue;
      *side.sql << "DROP TRIGGER " + prefix + suffix;
      dropped.push_back("trigger " + prefix + suffix);
    }
  } else {
    int n = 0;
    *side.sql << "SELECT COUNT(*) FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid"
                 " WHERE c.relnamespace = current_schema()::regnamespace AND t.tgname = '" +
                     prefix + "_capture'",
        soci::into(n);
    if (n > 0) {
      *side.sql << "DROP TRIGGER " + prefix + "_capture ON " + side.table;
      dropped.push_back("trigger " + prefix + "_capture");
    }
    *side.sql << "SELECT COUNT(*) FROM pg_proc WHERE pronamespace ="
                 " current_schema()::regnamespace AND proname = '" +
                     prefix + "_capture'",
        soci::into(n);
    if (n > 0) {
      *side.sql << "DROP FUNCTION " + prefix + "_capture()";
      dropped.push_back("function " + prefix + "_capture()");
    }
  }
  tx.commit();
  return dropped;
}

void markApplying(Side& side) {
  if (side.backend() == DbBackend::kSqlite3) {
    *side.sql << "INSERT INTO strangler_applying (marker) VALUES (1)";
  } else {
    *side.sql << "SET LOCAL strangler.origin = 'sync'";
    // With logical capture the WAL carries this message in the transaction: the decoder skips
    // the transaction's changes.
    if (side.logical) *side.sql << "SELECT pg_logical_emit_message(true, 'strangler-sync', '')";
  }
}

void unmarkApplying(Side& side) {
  if (side.backend() == DbBackend::kSqlite3) *side.sql << "DELETE FROM strangler_applying";
}

std::vector<std::string> parseChangedColumns(const std::string& cols) {
  std::vector<std::string> names;
  std::string current;
  for (char c : cols) {
    if (c == ',') {
      if (!current.empty()) names.push_back(current);
      current.clear();
    } else {
      current += c;
    }
  }
  if (!current.empty()) names.push_back(current);
  return names;
}

}  // namespace strangler::acl::sync::detail
