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
};

/// Decodes the slot's changes after `after` (an LSN), at most about `limit` output rows, skipping
/// the sync's own transactions and rows outside the mapping's constants. When everything up to
/// now (or `upto`) was read, next_position is that LSN. Reads through side.slot_sql.
LogicalBatch readLogical(Side& side, const std::string& after, int64_t limit,
                         const std::optional<std::string>& upto = std::nullopt);

/// Confirms the slot up to `position` (the WAL before it may be recycled).
void confirmLogical(Side& side, const std::string& position);

/// The slot's confirmed position and its lag behind the WAL's end, in bytes.
struct SlotState {
  std::string confirmed;
  int64_t lag_bytes = 0;
  bool exists = false;
};
SlotState slotState(Side& side);

}  // namespace strangler::acl::sync::detail
