#pragma once
// Key identity between the monolith's table and the service's, without shaping the monolith.
//
// Rows copied from the monolith keep their key in the service. Rows the service creates get
// keys from the service's own space (its sequence starts at kServiceIdFloor), so they never
// meet the keys the monolith keeps allocating as it always did. How such a row is written into
// the monolith depends on how the monolith allocates keys:
// - shared: the monolith's key column takes its default from a sequence (a PostgreSQL serial or
//   identity column). An explicit key does not move a sequence, so the service's key is written
//   as it is: the row has one key on both sides, which stays valid after a rollback.
// - mapped: anything else (SQLite's rowid and AUTOINCREMENT follow the largest key written, and
//   so does an application computing MAX + 1). A key from the service's space would drag the
//   monolith's allocator into that space. The row is inserted into the monolith with a key the
//   monolith's own allocator picks, and the pair is recorded in strangler_key_map, in the
//   monolith's database, in the transaction that inserts the row. Every later change of the row
//   is translated through the map, both ways. After a rollback the monolith serves such a row
//   under its own key (`strangler sync status` counts them).

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "strangler/acl/row.h"
#include "sync_side.h"

namespace strangler::acl::sync::detail {

enum class KeyMode { kShared, kMapped };
const char* toString(KeyMode mode);

/// Every recorded pair, both ways (what verify compares with).
struct KeyPairs {
  std::map<int64_t, int64_t> to_service;   ///< monolith key → service key
  std::map<int64_t, int64_t> to_monolith;  ///< service key → monolith key
  int64_t service(int64_t monolith_key) const {
    auto it = to_service.find(monolith_key);
    return it == to_service.end() ? monolith_key : it->second;
  }
  int64_t monolith(int64_t service_key) const {
    auto it = to_monolith.find(service_key);
    return it == to_monolith.end() ? service_key : it->second;
  }
};

/// Rows of both sides compared under one key: the service's (key_map.h). A monolith row whose
/// key is paired takes its pair's key, in its key column too.
class ServiceKeys {
 public:
  ServiceKeys(Side& monolith, KeyPairs pairs) : monolith_(monolith), pairs_(std::move(pairs)) {}

  int64_t of(const Side& side, int64_t key) const {
    return &side == &monolith_ ? pairs_.service(key) : key;
  }
  /// The side's own keys of these service keys.
  std::vector<int64_t> own(const Side& side, const std::vector<int64_t>& keys) const {
    if (&side != &monolith_ || pairs_.to_monolith.empty()) return keys;
    std::vector<int64_t> own;
    for (auto k : keys)
      own.push_back(pairs_.monolith(k));
    return own;
  }
  std::vector<std::pair<int64_t, Row>> normalized(const Side& side,
                                                  std::vector<std::pair<int64_t, Row>> rows) const {
    if (&side != &monolith_ || pairs_.to_service.empty()) return rows;
    for (auto& [key, row] : rows) {
      key = pairs_.service(key);
      row[side.key] = Value(key);
    }
    return rows;
  }
  std::vector<std::pair<int64_t, Row>> readKeys(Side& side,
                                                const std::vector<int64_t>& keys) const {
    return normalized(side, side.readKeys(own(side, keys)));
  }
  /// The rows whose service key is in [lo, hi].
  std::vector<std::pair<int64_t, Row>> readRange(Side& side, int64_t lo, int64_t hi) const {
    auto rows = side.readRange(lo - 1, hi, 0);
    if (&side != &monolith_ || pairs_.to_service.empty()) return rows;
    std::vector<std::pair<int64_t, Row>> kept;
    for (auto& row : rows)
      if (!pairs_.to_service.count(row.first)) kept.push_back(std::move(row));
    std::vector<int64_t> twins;
    for (auto it = pairs_.to_monolith.lower_bound(lo);
         it != pairs_.to_monolith.end() && it->first <= hi; ++it)
      twins.push_back(it->second);
    for (auto& row : side.readKeys(twins))
      kept.push_back(std::move(row));
    return normalized(side, std::move(kept));
  }

 private:
  Side& monolith_;
  KeyPairs pairs_;
};

class KeyMap {
 public:
  /// `floor`: the first key of the service's own space.
  KeyMap(Side& monolith, std::string mapping, int64_t floor);

  /// Decides the mode from the monolith's key column (reads only).
  void open();
  /// Creates strangler_key_map when mapped.
  void install();
  KeyMode mode() const { return mode_; }
  /// Pairs recorded so far.
  int64_t size();
  KeyPairs all();

  /// For keys of the `from_monolith` side, their keys on the other side where they differ
  /// (a key missing from the answer is the same on both sides).
  std::map<int64_t, int64_t> translate(const std::vector<int64_t>& keys, bool from_monolith);
  /// Whether a service key has no row in the monolith's key space yet and needs one allocated
  /// there (mapped mode, a key from the service's space, not in the map).
  bool needsAllocation(int64_t service_key, const std::map<int64_t, int64_t>& known) const;

  /// Inserts `row` (monolith columns, key excluded) into the monolith with a key its allocator
  /// picks, records the pair and returns the new key. Runs in the caller's transaction on the
  /// monolith's session.
  int64_t insertAllocated(int64_t service_key, const Row& row);
  /// Forgets the pair of a deleted row (either key).
  void forget(int64_t key, bool monolith_key);

 private:
  Side& monolith_;
  std::string mapping_;
  int64_t floor_;
  KeyMode mode_ = KeyMode::kShared;
  bool has_default_ = false;  // the monolith's key column allocates by itself
};

}  // namespace strangler::acl::sync::detail
