#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include "monolith/domain/geo.h"

namespace strangler::monolith::domain {

/// Seconds since the Unix epoch (the legacy timestamp unit).
using EpochSeconds = int64_t;

struct Passenger {
  int64_t id = 0;
  std::string name;
  std::string phone;
  std::optional<std::string> email;
  EpochSeconds created_at = 0;
};

/// Stored as a small int in the legacy schema: 0 offline, 1 available, 2 on a trip.
enum class DriverStatus { kOffline = 0, kAvailable = 1, kOnTrip = 2 };

struct Vehicle {
  std::string plate;
  std::string model;
};

struct Driver {
  int64_t id = 0;
  std::string name;
  std::string phone;
  Vehicle vehicle;
  DriverStatus status = DriverStatus::kOffline;
  std::optional<GeoPoint> location;
  std::optional<EpochSeconds> location_updated_at;
  EpochSeconds created_at = 0;
  EpochSeconds updated_at = 0;
};

/// Stored as a small int: 1 assigned (driver on the way / riding), 2 completed, 3 cancelled.
enum class TripStatus { kAssigned = 1, kCompleted = 2, kCancelled = 3 };

struct Trip {
  int64_t id = 0;
  int64_t passenger_id = 0;
  int64_t driver_id = 0;
  TripStatus status = TripStatus::kAssigned;
  GeoPoint pickup;
  GeoPoint dropoff;
  int64_t distance_m = 0;
  int64_t fare_cents = 0;
  EpochSeconds requested_at = 0;
  std::optional<EpochSeconds> completed_at;
  EpochSeconds updated_at = 0;
};

/// Stored as a small int: 1 issued, 2 paid.
enum class InvoiceStatus { kIssued = 1, kPaid = 2 };

struct Invoice {
  int64_t id = 0;
  int64_t trip_id = 0;
  int64_t passenger_id = 0;
  int64_t amount_cents = 0;
  std::string currency;
  InvoiceStatus status = InvoiceStatus::kIssued;
  EpochSeconds issued_at = 0;
};

/// Lower-case names used on the legacy API ("offline", "available", "on_trip").
const char* toString(DriverStatus status);
std::optional<DriverStatus> driverStatusFromString(const std::string& text);
const char* toString(TripStatus status);
const char* toString(InvoiceStatus status);

}  // namespace strangler::monolith::domain
