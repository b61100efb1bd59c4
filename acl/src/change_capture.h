#pragma once
// Change capture by triggers: each insert, update or delete of a side's mapped rows adds one row
// to that side's strangler_changes table, in the same transaction. No lock beyond the row the
// trigger writes: ordering and commit visibility are the change log's job (change_log.h).

#include <string>
#include <vector>

#include "sync_side.h"

namespace strangler::acl::sync::detail {

/// Creates (or upgrades) the sync's own tables on a side: change log, applying marker, state,
/// dead letters, ownership and the single-writer lease.
void ensureSyncTables(Side& side);

/// Installs (or replaces) the capture triggers of `side`'s mapped table for `mapping`. An update
/// records the mapped columns it changed; an insert, a delete, a key change or a row entering or
/// leaving the mapping's constants records the whole row (cols NULL). Writes the sync makes
/// itself (markApplying) are not recorded, so nothing echoes back.
void installCapture(Side& side, const std::string& mapping);

/// Drops the capture triggers (and on PostgreSQL their function); returns what it dropped.
std::vector<std::string> uninstallCapture(Side& side, const std::string& mapping);

/// Tags the current transaction as the sync's own: its writes to mapped rows are not captured.
void markApplying(Side& side);
/// Ends markApplying() before the commit (SQLite; PostgreSQL's tag ends with the transaction).
void unmarkApplying(Side& side);

/// The mapped columns named in a change row's `cols` text ("a,b" or "a,b,"); empty for none.
std::vector<std::string> parseChangedColumns(const std::string& cols);

}  // namespace strangler::acl::sync::detail
