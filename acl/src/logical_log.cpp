#include "logical_log.h"

#include <nlohmann/json.hpp>

#include <chrono>
#include <cstdio>
#include <ctime>
#include <set>
#include <thread>

namespace strangler::acl::sync::detail {
namespace {

// Another session (a status reader, a verify) may be peeking at the slot this instant.
template <typename Fn>
auto withSlot(Fn fn) -> decltype(fn()) {
  for (int attempt = 0;; ++attempt) {
    try {
      return fn();
    } catch (const soci::soci_error& e) {
      const std::string what = e.what();
      if (what.find("is active for PID") == std::string::npos || attempt >= 50) throw;
      std::this_thread::sleep_for(std::chrono::milliseconds(5 + attempt));
    }
  }
}

std::string currentSchema(Side& side) {
  std::string schema;
  *side.sql << "SELECT current_schema()", soci::into(schema);
  return schema;
}

bool matches(const Side& side, const nlohmann::json& columns) {
  for (const auto& [column, value] : side.constants) {
    bool found = false;
    for (const auto& c : columns) {
      if (c.value("name", "") != column) continue;
      found = true;
      const auto& v = c["value"];
      if (const auto* i = std::get_if<int64_t>(&value)) {
        if (!v.is_number_integer() || v.get<int64_t>() != *i) return false;
      } else if (const auto* s = std::get_if<std::string>(&value)) {
        if (!v.is_string() || v.get<std::string>() != *s) return false;
      }
    }
    if (!found) return false;
  }
  return true;
}

std::optional<int64_t> keyOf(const Side& side, const nlohmann::json& columns) {
  for (const auto& c : columns)
    if (c.value("name", "") == side.key && c["value"].is_number_integer())
      return c["value"].get<int64_t>();
  return std::nullopt;
}

// wal2json's commit timestamp ("2026-12-05 08:40:47.981369+00", the server's time zone) as
// Unix seconds; `fallback` when it cannot be read.
int64_t commitSeconds(const nlohmann::json& doc, int64_t fallback) {
  const std::string text = doc.value("timestamp", "");
  std::tm tm{};
  int offset_h = 0, offset_m = 0;
  char sign = '+';
  if (std::sscanf(text.c_str(), "%d-%d-%d %d:%d:%d", &tm.tm_year, &tm.tm_mon, &tm.tm_mday,
                  &tm.tm_hour, &tm.tm_min, &tm.tm_sec) != 6)
    return fallback;
  tm.tm_year -= 1900;
  tm.tm_mon -= 1;
  const auto zone = text.find_first_of("+-", 19);
  if (zone != std::string::npos) {
    sign = text[zone];
    std::sscanf(text.c_str() + zone + 1, "%d:%d", &offset_h, &offset_m);
  }
  const int64_t offset = (offset_h * 3600 + offset_m * 60) * (sign == '-' ? -1 : 1);
  return static_cast<int64_t>(timegm(&tm)) - offset;
}

}  // namespace

uint64_t parseLsn(const std::string& lsn) {
  const auto slash = lsn.find('/');
  if (slash == std::string::npos) return 0;
  try {
    return (std::stoull(lsn.substr(0, slash), nullptr, 16) << 32) |
           std::stoull(lsn.substr(slash + 1), nullptr, 16);
  } catch (const std::exception&) {
    return 0;
  }
}

std::string slotName(Side& side, const std::string& mapping) {
  std::string name = "strangler_" + mapping + "_" + currentSchema(side);
  for (auto& c : name)
    if (!std::isalnum(static_cast<unsigned char>(c)) && c != '_') c = '_';
  return name.substr(0, 63);
}

bool logicalAvailable(Side& side) {
  if (!side.engine().hasLogicalDecoding()) return false;
  std::string level;
  *side.sql << "SHOW wal_level", soci::into(level);
  return level == "logical";
}

void settleSlot(Side& side) {
  // A process killed while creating the slot leaves its backend finishing (or abandoning) the
  // creation: until then the slot shows as active and may still vanish. Wait for it to settle.
  for (int attempt = 0; attempt < 600; ++attempt) {
    int busy = 0;
    *side.sql << "SELECT COUNT(*) FROM pg_replication_slots WHERE slot_name = :s AND active AND"
                 " active_pid <> pg_backend_pid()",
        soci::use(side.slot), soci::into(busy);
    if (busy == 0) return;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
}

void installLogical(Side& side) {
  const std::string& slot = side.slot;
  int identity_full = 0;
  *side.sql << "SELECT COUNT(*) FROM pg_class WHERE oid = '" + side.table +
                   "'::regclass AND relreplident = 'f'",
      soci::into(identity_full);
  // A moment's exclusive lock on the table, once: under the session's 200 ms lock timeout it
  // never queues the monolith's transactions for long; it is tried again until it gets in.
  for (int attempt = 0; identity_full == 0; ++attempt) {
    try {
      *side.sql << "ALTER TABLE " + side.table + " REPLICA IDENTITY FULL";
      break;
    } catch (const soci::soci_error& e) {
      if (std::string(e.what()).find("lock timeout") == std::string::npos || attempt >= 100) throw;
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
  }
  int slots = 0;
  *side.sql << "SELECT COUNT(*) FROM pg_replication_slots WHERE slot_name = :s", soci::use(slot),
      soci::into(slots);
  if (slots == 0) {
    // A new slot waits until the transactions running now have finished (its consistent
    // point): no lock timeout for that one statement.
    std::string created;
    *side.sql << "SET lock_timeout = 0";
    try {
      *side.sql << "SELECT lsn::text FROM pg_create_logical_replication_slot(:s, 'wal2json')",
          soci::use(slot), soci::into(created);
    } catch (const soci::soci_error&) {
      *side.sql << "SET lock_timeout = '200ms'";
      throw;
    }
    *side.sql << "SET lock_timeout = '200ms'";
  }
}

std::vector<std::string> uninstallLogical(Side& side) {
  std::vector<std::string> done;
  const std::string& slot = side.slot;
  int slots = 0;
  *side.sql << "SELECT COUNT(*) FROM pg_replication_slots WHERE slot_name = :s", soci::use(slot),
      soci::into(slots);
  if (slots > 0) {
    withSlot([&] {
      *side.sql << "SELECT pg_drop_replication_slot(:s)", soci::use(slot);
      return 0;
    });
    done.push_back("replication slot " + slot);
  }
  *side.sql << "ALTER TABLE " + side.table + " REPLICA IDENTITY DEFAULT";
  done.push_back("replica identity of " + side.table + " back to default");
  return done;
}

std::string createTemporarySlot(soci::session& session, const std::string& slot) {
  // Like the sync's own slot, a new one waits for the transactions running now to finish.
  std::string created;
  session << "SET lock_timeout = 0";
  session << "SELECT lsn::text FROM pg_create_logical_replication_slot(:s, 'wal2json',"
             " true)",
      soci::use(slot), soci::into(created);
  return created;
}

std::string currentLsn(Side& side) {
  std::string lsn;
  *side.sql << "SELECT pg_current_wal_lsn()::text", soci::into(lsn);
  return lsn;
}

SlotState slotState(Side& side, const std::string& slot_name) {
  SlotState state;
  const std::string& slot = slot_name.empty() ? side.slot : slot_name;
  std::string confirmed;
  long long lag = 0;
  soci::indicator ind = soci::i_null, lag_ind = soci::i_null;
  *side.sql << "SELECT confirmed_flush_lsn::text, (pg_current_wal_lsn() - confirmed_flush_lsn)"
               "::bigint FROM pg_replication_slots WHERE slot_name = :s",
      soci::use(slot), soci::into(confirmed, ind), soci::into(lag, lag_ind);
  if (ind != soci::i_ok) return state;
  state.exists = true;
  state.confirmed = confirmed;
  state.lag_bytes = lag_ind == soci::i_ok ? lag : 0;
  return state;
}

void confirmLogical(Side& side, const std::string& position, const SlotReader& reader) {
  const std::string& slot = reader.slot.empty() ? side.slot : reader.slot;
  soci::session& session = reader.session != nullptr ? *reader.session : *side.slot_sql;
  const SlotState state = slotState(side, slot);
  if (!state.exists || parseLsn(position) <= parseLsn(state.confirmed)) return;
  withSlot([&] {
    std::string moved;
    session << "SELECT end_lsn::text FROM pg_replication_slot_advance(:s, :p::pg_lsn)",
        soci::use(slot), soci::use(position), soci::into(moved);
    return 0;
  });
}

namespace {

/// One decoded change as ChangeRows (none when it does not touch the mapping's rows): taken
/// as soon as it is read, so a read of many changes keeps rows, not parsed documents.
void toChangeRows(const Side& side, const nlohmann::json& doc, int64_t now_s,
                  std::vector<ChangeRow>& out) {
  const std::string action = doc.value("action", "");
  const auto& fresh = doc.contains("columns") ? doc["columns"] : nlohmann::json::array();
  const auto& old = doc.contains("identity") ? doc["identity"] : nlohmann::json::array();
  const bool new_in = action != "D" && matches(side, fresh);
  const bool old_in = action != "I" && matches(side, old);
  if (!new_in && !old_in) return;
  // Plain values (an optional here trips GCC 12's maybe-uninitialized check).
  const auto new_found = new_in ? keyOf(side, fresh) : std::nullopt;
  const auto old_found = action != "I" ? keyOf(side, old) : std::nullopt;
  const bool has_new = new_found.has_value(), has_old = old_found.has_value();
  const int64_t new_key = new_found.value_or(0), old_key = old_found.value_or(0);
  ChangeRow row;
  row.changed_at = commitSeconds(doc, now_s);
  row.op = action;
  if (action == "U" && new_in && old_in && has_new && has_old && new_key == old_key) {
    std::string cols;
    for (const auto& c : fresh) {
      const std::string name = c.value("name", "");
      if (name == side.key) continue;
      bool mapped = false;
      for (const auto& m : side.columns)
        mapped = mapped || m == name;
      if (!mapped) continue;
      for (const auto& o : old)
        if (o.value("name", "") == name && o["value"] != c["value"]) cols += name + ",";
    }
    if (cols.empty()) return;
    row.pk = new_key;
    row.cols = cols;
    out.push_back(row);
    return;
  }
  // Inserts, deletes, key changes and rows entering or leaving the constants: whole rows
  // (the applier reads the current row, or deletes the key when it is gone).
  if (has_new) {
    row.pk = new_key;
    out.push_back(row);
  }
  if (has_old && (!has_new || old_key != new_key)) {
    row.pk = old_key;
    out.push_back(row);
  }
}

}  // namespace

LogicalBatch readLogical(Side& side, const std::string& after, int64_t limit,
                         const std::optional<std::string>& upto, const SlotReader& reader) {
  const std::string& slot = reader.slot.empty() ? side.slot : reader.slot;
  soci::session& session = reader.session != nullptr ? *reader.session : *side.slot_sql;
  if (!slotState(side, slot).exists) {
    throw soci::soci_error("the replication slot " + slot +
                           " is gone (dropped, or invalidated when it fell too far behind): "
                           "run `strangler sync uninstall`, then `strangler sync run` to copy "
                           "the rows again");
  }
  const std::string to = upto ? *upto : currentLsn(side);
  const std::string table = currentSchema(side) + "." + side.table;
  const uint64_t skip_upto = parseLsn(after);
  const auto now_s = nowSeconds();
  LogicalBatch batch;
  std::string last_commit;
  // Whole transactions come out of the slot, each ending in its commit: a transaction is taken
  // when it committed after `after` (its records may be older), and it is not the sync's own.
  // Each change is decoded as it is read; only its rows wait for the commit.
  const long long rows_read = withSlot([&] {
    batch.rows.clear();
    last_commit.clear();
    std::map<long long, std::vector<ChangeRow>> open;
    std::set<long long> own;
    std::string lsn, data;
    long long xid = 0;
    long long count = 0;
    const long long max_rows = limit;
    soci::statement st =
        (session.prepare << "SELECT lsn::text, xid::text::bigint, data FROM"
                            " pg_logical_slot_peek_changes(:s, :to::pg_lsn, :n, 'format-version',"
                            " '2', 'include-xids', '1', 'include-timestamp', '1',"
                            " 'include-type-oids', '0', 'add-tables', :t)",
         soci::use(slot), soci::use(to), soci::use(max_rows), soci::use(table), soci::into(lsn),
         soci::into(xid), soci::into(data));
    st.execute();
    int64_t seq = 0;
    while (st.fetch()) {
      ++count;
      auto doc = nlohmann::json::parse(data, nullptr, false);
      if (!doc.is_object()) continue;
      const std::string action = doc.value("action", "");
      if (action == "M" && reader.skip_own && doc.value("prefix", "") == "strangler-sync")
        own.insert(xid);
      if (action == "I" || action == "U" || action == "D")
        toChangeRows(side, doc, now_s, open[xid]);
      if (action != "C") continue;
      last_commit = lsn;
      auto committed = open.find(xid);
      if (committed == open.end()) continue;
      const uint64_t commit_lsn = parseLsn(lsn);
      if (commit_lsn > skip_upto && !own.count(xid)) {
        for (auto& row : committed->second) {
          row.seq = ++seq;
          row.commit_lsn = commit_lsn;
          batch.rows.push_back(std::move(row));
        }
      }
      open.erase(committed);
    }
    return count;
  });
  // Everything up to `to` was read unless the row limit cut the read short.
  batch.next_position = after;
  batch.complete = rows_read < limit;
  if (batch.complete) {
    batch.next_position = to;
  } else if (!last_commit.empty()) {
    batch.next_position = last_commit;
  }
  if (parseLsn(batch.next_position) < skip_upto) batch.next_position = after;
  return batch;
}

}  // namespace strangler::acl::sync::detail
