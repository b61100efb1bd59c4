#pragma once
// Change capture from PostgreSQL's write-ahead log: a logical replication slot decoded by
// wal2json. Nothing is added to the monolith's write path (no trigger, no change table): the
// slot reads what PostgreSQL logs anyway. The table runs with REPLICA IDENTITY FULL so an update
// carries its old values, from which the changed columns are known.
//
// Positions are LSNs. The applier's checkpoint (committed in the target with the rows) is the
// truth; the slot is advanced after each commit, so it keeps only WAL not yet applied. Changes
// the sync itself writes into the monolith carry a transactional logical message
// ("strangler-sync") and are skipped, so nothing echoes back.

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "change_log.h"
#include "sync_side.h"

namespace strangler::acl::sync::detail {

/// "16/B374D848" → a comparable number (0 for anything else).
uint64_t parseLsn(const std::string& lsn);

/// The slot name of a mapping on a side (unique per database: it carries the schema).
std::string slotName(Side& side, const std::string& mapping);

/// Whether the server can decode logically (wal_level=logical).
bool logicalAvailable(Side& side);

/// Waits while another backend holds the slot (a killed process's backend may still be creating
/// it, or reading it), at most 30 s.
void settleSlot(Side& side);

/// REPLICA IDENTITY FULL on the mapped table and the slot (created once; its start is before
/// anything the snapshot copies).
void installLogical(Side& side);

/// Drops the slot and gives the table its default replica identity back; returns what it did.
std::vector<std::string> uninstallLogical(Side& side);

/// The WAL position now.
std::string currentLsn(Side& side);

/// What a read of the slot gives: the changes (pk, changed columns) of the mapped rows, and the
/// position the reader has passed.
struct LogicalBatch {
  std::vector<ChangeRow> rows;
  std::string next_position;
  bool complete = true;  ///< everything up to the end was read (the limit did not cut it short)
};

/// Which slot a read takes, and whether the sync's own transactions count. The sync reads its
/// slot (side.slot) and skips its own writes (nothing echoes back); the verifier reads its own
/// temporary slot and takes them too (a key the sync wrote changed all the same).
struct SlotReader {
  std::string slot;  ///< empty: side.slot
  bool skip_own = true;
  /// The session that reads and advances it (nullptr: side.slot_sql). A temporary slot can be
  /// used only by the session that created it, and PostgreSQL drops it on any error there.
  soci::session* session = nullptr;
};

/// Decodes the slot's changes after `after` (an LSN), at most about `limit` output rows, skipping
/// rows outside the mapping's constants (and the sync's own transactions unless told not to).
/// When everything up to now (or `upto`) was read, next_position is that LSN. Reads through
/// side.slot_sql.
LogicalBatch readLogical(Side& side, const std::string& after, int64_t limit,
                         const std::optional<std::string>& upto = std::nullopt,
                         const SlotReader& reader = {});

/// Confirms the slot up to `position` (the WAL before it may be recycled).
void confirmLogical(Side& side, const std::string& position, const SlotReader& reader = {});

/// The slot's confirmed position and its lag behind the WAL's end, in bytes.
struct SlotState {
  std::string confirmed;
  int64_t lag_bytes = 0;
  bool exists = false;
};
SlotState slotState(Side& side, const std::string& slot = {});

/// What a reader of its own slot knows about the monolith's keys: where the latest change of
/// each committed, for changes committed after `since` (its slot's start) that the sync had not
/// applied when last pruned. Once the sync's checkpoint has passed `since`, a key absent here has
/// nothing pending up to the reader's position, and the lookup costs a hash probe instead of a
/// read of the sync's whole backlog.
struct KnownCommits {
  uint64_t since = 0;  ///< 0: nothing known
  /// While the sync is still short of `since`, take every key as pending (lag) rather than
  /// read the sync's backlog: `verify --watch`, whose next round decides them.
  bool lag_before_since = false;
  std::unordered_map<int64_t, uint64_t> latest;

  void add(const ChangeRow& change) {
    auto& at = latest[change.pk];
    if (change.commit_lsn > at) at = change.commit_lsn;
  }
  /// Forgets what the sync has applied (committed at or before `applied`).
  void prune(uint64_t applied) {
    for (auto it = latest.begin(); it != latest.end();)
      it = it->second <= applied ? latest.erase(it) : std::next(it);
  }
};

/// Creates a temporary slot on `session` (dropped by PostgreSQL when that session ends, so a
/// killed reader retains no WAL, and on any error in it); returns its start LSN. Changes
/// committed after it are read from it.
std::string createTemporarySlot(soci::session& session, const std::string& slot);

}  // namespace strangler::acl::sync::detail
