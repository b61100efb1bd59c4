#pragma once

#include "strangler/common/db.h"

namespace soci {
class session;
}

namespace strangler::monolith::persistence {

/// The legacy schema version this build creates and expects (kept in `app_meta`).
inline constexpr int kSchemaVersion = 1;

/// users.id values from here up are reserved for extracted services: after a sync flip they
/// allocate their own ids there, and the monolith never allocates one (see the sync engine).
inline constexpr long long kServiceIdFloor = 1000000000000LL;

/// Creates the legacy RideShare tables and indexes when missing (idempotent).
void ensureSchema(soci::session& sql, common::DbBackend backend);

}  // namespace strangler::monolith::persistence
