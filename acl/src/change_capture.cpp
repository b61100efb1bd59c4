#include "change_capture.h"

#include <chrono>
#include <thread>

namespace strangler::acl::sync::detail {
namespace {

std::string triggerPrefix(const Side& side, const std::string& mapping) {
  return "strangler_" + mapping + "_" + side.table;
}

}  // namespace

void ensureSyncTables(Side& side) {
  common::Transaction tx(*side.sql, side.backend(), common::Transaction::Mode::kWrite);
  // cols: the mapped columns an update changed (NULL: the whole row); txid: the writing
  // transaction (PostgreSQL), which decides when a reader may take the change.
  *side.sql << "CREATE TABLE IF NOT EXISTS strangler_changes (seq " +
                   side.engine().changeSeqType() +
                   ", table_name VARCHAR(63) NOT NULL, pk BIGINT NOT NULL, op CHAR(1) NOT NULL,"
                   " origin VARCHAR(8) NOT NULL, changed_at BIGINT NOT NULL, cols TEXT,"
                   " txid BIGINT NOT NULL DEFAULT 0)";
  side.addColumnIfMissing("strangler_changes", "cols", "TEXT");
  side.addColumnIfMissing("strangler_changes", "txid", "BIGINT NOT NULL DEFAULT 0");
  // No (table_name, seq) index: every captured write paid for it, and the readers' seq ranges
  // and order come from the primary key (the log holds few tables, and is pruned). Earlier
  // versions created it.
  *side.sql << "DROP INDEX IF EXISTS strangler_changes_by_table";
  side.engine().indexChangeLog(side);
  // Where the engine has no session variables (SQLite), a row here inside the sync's own
  // transaction tells the triggers the write is the sync's (other transactions never see it).
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
  // A table held by a long transaction (or a vacuum) refuses the trigger's lock for a while:
  // tried again for about a minute before the error goes up.
  for (int attempt = 1;; ++attempt) {
    try {
      side.engine().installTriggers(side, triggerPrefix(side, mapping), attempt > 1);
      return;
    } catch (const soci::soci_error& e) {
      if (!lockBusy(e) || attempt >= 20) throw;
      std::this_thread::sleep_for(std::chrono::seconds(1));
    }
  }
}

std::vector<std::string> uninstallCapture(Side& side, const std::string& mapping) {
  common::Transaction tx(*side.sql, side.backend(), common::Transaction::Mode::kWrite);
  auto dropped = side.engine().dropTriggers(side, triggerPrefix(side, mapping));
  tx.commit();
  return dropped;
}

void markApplying(Side& side) {
  side.engine().markApplying(side);
}

void unmarkApplying(Side& side) {
  side.engine().unmarkApplying(side);
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
