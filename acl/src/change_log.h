#pragma once
// Reading a side's change log (strangler_changes) exactly once in effect, without locks.
//
// A position says which captured changes a reader has taken:
// - SQLite: the newest change's seq. SQLite runs one write transaction at a time, so every
//   change with a lower seq has committed once a reader sees a seq.
// - PostgreSQL: a transaction snapshot (pg_current_snapshot() as text, "xmin:xmax:xip,…").
//   Concurrent writers commit in any order, so a seq says nothing about what has committed; a
//   change belongs to a position when its transaction is visible in that snapshot (the way PgQ
//   batches its events). No writer waits on another for this.
// The reader applies a window (from, to] of changes in seq order, in batches; the checkpoint
// (position, window_to, window_seq) is committed with each batch in the target database.

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "sync_side.h"

namespace strangler::acl::sync::detail {

/// How far one direction has applied a source's change log.
struct Checkpoint {
  std::string position;                  ///< every change at or before it is applied
  std::optional<std::string> window_to;  ///< the window being applied, if any
  int64_t window_seq = 0;                ///< in that window, changes up to this seq are applied
};

/// One captured change.
struct ChangeRow {
  int64_t seq = 0;
  int64_t pk = 0;
  std::string op;
  int64_t changed_at = 0;           ///< Unix seconds
  std::optional<std::string> cols;  ///< changed mapped columns; nullopt: the whole row
  uint64_t commit_lsn = 0;          ///< logical capture: where its transaction committed
};

/// The position now: everything committed so far.
std::string currentPosition(Side& side);

/// Changes of `side.table` after position `from` and at or before `to`, after seq `after_seq`,
/// in seq order, at most `limit`.
std::vector<ChangeRow> readWindow(Side& side, const std::string& from, const std::string& to,
                                  int64_t after_seq, int64_t limit);

/// A SQL condition over strangler_changes' columns: the change is not yet applied by a reader
/// at `checkpoint`.
std::string notCovered(const Side& side, const Checkpoint& checkpoint);

/// A SQL condition over strangler_changes' columns: the change is at or before `position`.
std::string atOrBefore(const Side& side, const std::string& position);

/// Deletes `side.table`'s changes at or before `position` (applied by the sync) that every live
/// registered reader (strangler_readers) has read too. Expired registrations are removed first,
/// in the same transaction, so a reader that was killed holds pruning back for one TTL at most.
void pruneChanges(Side& side, const std::string& position);

// Readers besides the sync (`sync verify --watch`) register the position they have read through
// in strangler_readers, with an expiry they renew while they run.

/// Registers (or moves) `reader` on `side.table`'s change log at `position` for `ttl_s` seconds.
void registerReader(Side& side, const std::string& reader, const std::string& position, int ttl_s);
/// Moves a live registration to `position` and renews it; false when the registration is gone
/// (it expired and a prune removed it: changes after its position may have been deleted).
bool renewReader(Side& side, const std::string& reader, const std::string& position, int ttl_s);
/// The same on another session of that database (`backend`), e.g. while `side`'s own session
/// holds a read snapshot; `position` must have been checked already.
bool renewReaderOn(soci::session& sql, DbBackend backend, const std::string& reader,
                   const std::string& position, int ttl_s);
/// Removes the registration.
void unregisterReader(Side& side, const std::string& reader);

/// Whether `position` is well-formed for the side's engine (it is embedded in SQL).
bool validPosition(const Side& side, const std::string& position);

}  // namespace strangler::acl::sync::detail
