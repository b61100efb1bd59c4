#pragma once

#include "driver_service/ports/ports.h"
#include "strangler/common/db.h"

namespace strangler::driver_service::persistence {

/// Creates the service's own schema when missing: a `drivers` table whose columns are the
/// service side of acl/mappings/drivers.json, plus a grid index (cell_lat, cell_lng) for
/// "nearby" that works the same on SQLite and PostgreSQL.
void ensureSchema(common::SessionPool& pool);

/// DriverStore on SOCI (one pooled session per call).
class SociDriverStore : public ports::DriverStore {
 public:
  explicit SociDriverStore(common::SessionPool& pool) : pool_(pool) {}
  domain::Driver insert(const domain::Driver& driver) override;
  std::optional<domain::Driver> find(int64_t id) override;
  std::vector<domain::Driver> list(int64_t limit, int64_t offset) override;
  int64_t count() override;
  bool update(const domain::Driver& driver) override;
  std::vector<domain::Driver> availableIn(const domain::CellRange& cells) override;

 private:
  common::SessionPool& pool_;
};

}  // namespace strangler::driver_service::persistence
