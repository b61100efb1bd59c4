#pragma once
// The single-writer lease: one process at a time applies changes for a mapping (both
// directions), so two `sync watch`es, or a watch and a `sync run`, never apply at once.
// The lease is a row in the service database, renewed by its holder; it expires when the
// holder stops renewing it (killed), so a successor takes over after at most the TTL.

#include <cstdint>
#include <optional>
#include <string>

#include "sync_side.h"

namespace strangler::acl::sync::detail {

struct LeaseRow {
  std::string holder;
  int64_t expires_in_ms = 0;  ///< negative once expired
};

/// Takes the lease for `holder`, or renews it when `holder` already has it. Returns nullopt on
/// success, or the live holder that keeps it.
std::optional<LeaseRow> acquireLease(Side& side, const std::string& mapping,
                                     const std::string& holder, int ttl_ms);

/// Gives the lease up if `holder` has it.
void releaseLease(Side& side, const std::string& mapping, const std::string& holder);

/// The lease's holder, if any holds it now (expired leases are not reported).
std::optional<LeaseRow> currentLease(Side& side, const std::string& mapping);

/// This process's holder name: host, pid and a start time.
std::string defaultHolder();

}  // namespace strangler::acl::sync::detail
