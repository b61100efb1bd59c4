#pragma once

#include <cstdint>

#include "monolith/ports/unit_of_work.h"

namespace strangler::monolith::application {

/// What seeding did.
struct SeedReport {
  bool seeded = false;  ///< false when the database already had data (seeding is skipped)
  int64_t passengers = 0;
  int64_t drivers = 0;
  int64_t trips = 0;
};

/// Fills an empty database with `n` passengers, `n` drivers around Seoul and `n` completed trips
/// with their invoices. Deterministic: the same `n` always gives the same rows (fixed random
/// seed and fixed timestamps), so demos and tests can rely on ids and values.
SeedReport seedDemoData(ports::UnitOfWork& uow, int64_t n);

}  // namespace strangler::monolith::application
