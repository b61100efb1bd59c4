#pragma once

#include "strangler/common/db.h"

namespace soci {
class session;
}

namespace strangler::monolith::persistence {

/// The legacy schema version this build creates and expects (kept in `app_meta`).
inline constexpr int kSchemaVersion = 1;

/// Creates the legacy RideShare tables and indexes when missing (idempotent).
void ensureSchema(soci::session& sql, common::DbBackend backend);

}  // namespace strangler::monolith::persistence
