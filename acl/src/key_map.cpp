#include "key_map.h"

namespace strangler::acl::sync::detail {

const char* toString(KeyMode mode) {
  return mode == KeyMode::kShared ? "shared" : "mapped";
}

KeyMap::KeyMap(Side& monolith, std::string mapping, int64_t floor)
    : monolith_(monolith), mapping_(std::move(mapping)), floor_(floor) {}

void KeyMap::open() {
  Side& m = monolith_;
  const auto key_default = m.engine().keyDefault(m);
  has_default_ = key_default.allocates;
  const bool sequence = key_default.sequence;
  mode_ = sequence ? KeyMode::kShared : KeyMode::kMapped;
  if (mode_ == KeyMode::kShared && size() > 0) mode_ = KeyMode::kMapped;  // pairs stay in force
}

void KeyMap::install() {
  Side& m = monolith_;
  const std::string bigint = m.engine().bigintType();
  if (mode_ == KeyMode::kMapped) {
    *m.sql << "CREATE TABLE IF NOT EXISTS strangler_key_map (mapping TEXT NOT NULL, service_key " +
                  bigint + " NOT NULL, monolith_key " + bigint +
                  " NOT NULL, PRIMARY KEY (mapping, service_key))";
    *m.sql << "CREATE UNIQUE INDEX IF NOT EXISTS strangler_key_map_monolith ON strangler_key_map"
              " (mapping, monolith_key)";
  }
}

int64_t KeyMap::size() {
  if (!monolith_.tableExists("strangler_key_map")) return 0;
  return monolith_.scalar("SELECT COUNT(*) FROM strangler_key_map WHERE mapping = '" + mapping_ +
                          "'");
}

KeyPairs KeyMap::all() {
  KeyPairs pairs;
  if (mode_ != KeyMode::kMapped || !monolith_.tableExists("strangler_key_map")) return pairs;
  Int service_key = 0;
  Int monolith_key = 0;
  soci::statement st =
      (monolith_.sql->prepare
           << "SELECT service_key, monolith_key FROM strangler_key_map WHERE mapping = :m",
       soci::use(mapping_), soci::into(service_key), soci::into(monolith_key));
  st.execute();
  while (st.fetch()) {
    pairs.to_service[monolith_key] = service_key;
    pairs.to_monolith[service_key] = monolith_key;
  }
  return pairs;
}

std::map<int64_t, int64_t> KeyMap::translate(const std::vector<int64_t>& keys, bool from_monolith) {
  std::map<int64_t, int64_t> found;
  if (mode_ != KeyMode::kMapped || keys.empty()) return found;
  // Only keys of the service's space have a monolith twin with another key, so only they are
  // looked up that way; any monolith key may be one the map gave out.
  std::vector<int64_t> wanted;
  for (auto k : keys)
    if (from_monolith || k >= floor_) wanted.push_back(k);
  if (wanted.empty()) return found;
  const std::string from = from_monolith ? "monolith_key" : "service_key";
  const std::string to = from_monolith ? "service_key" : "monolith_key";
  Int a = 0;
  Int b = 0;
  soci::statement st = (monolith_.sql->prepare << "SELECT " + from + ", " + to +
                                                      " FROM strangler_key_map WHERE mapping = :m"
                                                      " AND " +
                                                      from + " IN (" + keyList(wanted) + ")",
                        soci::use(mapping_), soci::into(a), soci::into(b));
  st.execute();
  while (st.fetch())
    found[a] = b;
  return found;
}

bool KeyMap::needsAllocation(int64_t service_key, const std::map<int64_t, int64_t>& known) const {
  return mode_ == KeyMode::kMapped && service_key >= floor_ && !known.count(service_key);
}

int64_t KeyMap::insertAllocated(int64_t service_key, const Row& row) {
  Side& m = monolith_;
  std::string columns;
  std::string values;
  for (const auto& [column, value] : row) {
    if (column == m.key) continue;
    columns += (columns.empty() ? "" : ", ") + column;
    values += (values.empty() ? "" : ", ") + sqlLiteral(value);
  }
  Int key = 0;
  if (!has_default_) {
    // The largest key below the service's space, plus one: what an application computing its
    // keys does. SQLite runs one write transaction at a time; on PostgreSQL a racing insert
    // fails on the key and the batch is tried again.
    key = m.scalar("SELECT COALESCE(MAX(" + m.key + "), 0) + 1 FROM " + m.table + " WHERE " +
                   m.key + " < " + std::to_string(floor_));
    *m.sql << "INSERT INTO " + m.table + " (" + m.key + ", " + columns + ") VALUES (" +
                  std::to_string(key) + ", " + values + ")";
  } else {
    key = m.engine().insertAllocating(m, columns, values);
  }
  Int s = service_key;
  *m.sql << "INSERT INTO strangler_key_map (mapping, service_key, monolith_key) VALUES (:m, :s, "
            ":k)",
      soci::use(mapping_), soci::use(s), soci::use(key);
  return key;
}

void KeyMap::forget(int64_t key, bool monolith_key) {
  if (mode_ != KeyMode::kMapped) return;
  Int k = key;
  *monolith_.sql << std::string("DELETE FROM strangler_key_map WHERE mapping = :m AND ") +
                        (monolith_key ? "monolith_key" : "service_key") + " = :k",
      soci::use(mapping_), soci::use(k);
}

}  // namespace strangler::acl::sync::detail
