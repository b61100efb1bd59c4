#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "monolith/domain/entities.h"

namespace strangler::monolith::domain {

/// A rule a request broke: which field, and why (shown to API clients).
struct Violation {
  std::string field;
  std::string message;
};

/// Checks a person's name, phone and optional e-mail; returns every violation.
std::vector<Violation> checkContact(const std::string& name, const std::string& phone,
                                    const std::optional<std::string>& email);
/// Checks a vehicle's plate and model.
std::vector<Violation> checkVehicle(const Vehicle& vehicle);

/// How trips are priced. Amounts in cents of `currency`.
struct FareSchedule {
  int64_t base_cents = 250;
  int64_t per_km_cents = 120;
  int64_t minimum_cents = 500;
  std::string currency = "USD";

  /// The fare for a trip of `distance_m` metres, rounded to the cent, never below the minimum.
  int64_t fareCents(int64_t distance_m) const;
};

/// How far dispatch looks for an available driver around the pickup point.
inline constexpr double kDispatchRadiusM = 10000.0;

/// A driver that could take a trip, with its distance to the pickup point.
struct Candidate {
  int64_t driver_id = 0;
  double distance_m = 0;
};

/// Available drivers within `radius_m` of `pickup`, nearest first (ties broken by id, so
/// dispatch is deterministic). Drivers without a location or not available are skipped.
std::vector<Candidate> rankCandidates(const std::vector<Driver>& drivers, const GeoPoint& pickup,
                                      double radius_m);

/// Whether an operator may set `to` on a driver now in `from` (on_trip is owned by trips).
std::optional<std::string> checkStatusChange(DriverStatus from, DriverStatus to);

}  // namespace strangler::monolith::domain
