#pragma once

#include <nlohmann/json.hpp>

#include <cstdint>
#include <optional>
#include <string>

#include "driver_service/domain/driver.h"
#include "driver_service/ports/ports.h"
#include "strangler/common/result.h"

// The ACL between RideShare's legacy driver API and driver-service's model: the code half of
// the translation (the declarative half, for table rows, is mappings/drivers.json). Everything
// here is pure. Parsing reproduces the legacy API's validation order and messages exactly, so
// legacy clients cannot tell which side answered.
namespace strangler::acl::legacy_drivers {

namespace ds = strangler::driver_service;

/// The legacy status name ("offline", "available", "on_trip"), from the drivers mapping.
std::string legacyStatus(ds::domain::DriverStatus status);
/// A legacy status name → the service's status, or nullopt.
std::optional<ds::domain::DriverStatus> statusFromLegacy(const std::string& name);

/// Degrees rounded to the legacy resolution (integer micro-degrees), as the monolith stores them.
double legacyDegrees(double degrees);

/// A driver in the legacy JSON shape (GET /api/drivers/{id}).
nlohmann::json toLegacy(const ds::domain::Driver& driver, int64_t completed_trips);
/// A driver in the legacy "nearby" shape: no completed_trips, plus distance_m.
nlohmann::json toLegacyNearby(const ds::domain::Driver& driver, double distance_m);

/// A legacy POST /api/drivers body → a registration; errors carry the legacy message.
common::Result<ds::ports::Registration> registrationFromLegacy(const nlohmann::json& body);
/// A legacy PUT /api/drivers/{id}/location body → a position at legacy resolution.
common::Result<ds::domain::Location> locationFromLegacy(const nlohmann::json& body);
/// A legacy PUT /api/drivers/{id}/status body → a status (any legacy name, on_trip included:
/// refusing it is the use case's job, as in the monolith).
common::Result<ds::domain::DriverStatus> statusChangeFromLegacy(const nlohmann::json& body);

/// A service error in legacy words (field names of the service model → legacy field names).
common::Error toLegacyError(const common::Error& error);

}  // namespace strangler::acl::legacy_drivers
