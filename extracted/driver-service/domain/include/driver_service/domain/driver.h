#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace strangler::driver_service::domain {

/// Seconds since the Unix epoch.
using EpochSeconds = int64_t;

enum class DriverStatus { kOffline, kAvailable, kOnTrip };

/// "OFFLINE", "AVAILABLE", "ON_TRIP" (the service's own API names).
const char* toString(DriverStatus status);
std::optional<DriverStatus> driverStatusFromString(const std::string& text);

struct Vehicle {
  std::string plate;
  std::string model;
  bool operator==(const Vehicle&) const = default;
};

/// A position in decimal degrees.
struct Location {
  double lat = 0;
  double lng = 0;
  bool operator==(const Location&) const = default;
};

/// The driver-service's own model of a driver: no user-type codes, no micro-degrees.
struct Driver {
  int64_t id = 0;
  std::string name;
  std::string phone;
  Vehicle vehicle;
  DriverStatus status = DriverStatus::kOffline;
  std::optional<Location> location;
  std::optional<EpochSeconds> location_updated_at;
  EpochSeconds created_at = 0;
  EpochSeconds updated_at = 0;
};

/// A rule a request broke.
struct Violation {
  std::string field;
  std::string message;
};

/// Every violation of a driver's contact data and vehicle.
std::vector<Violation> checkDriver(const std::string& name, const std::string& phone,
                                   const Vehicle& vehicle);
/// Why a position is not on Earth, or nullopt.
std::optional<std::string> checkLocation(const Location& location);
/// Whether a driver may move from `from` to `to` on their own (on_trip belongs to dispatch).
std::optional<std::string> checkStatusChange(DriverStatus from, DriverStatus to);

/// Great-circle distance in metres (haversine, mean Earth radius).
double distanceMeters(const Location& a, const Location& b);

/// The grid index: cells of 0.01 degree (about 1.1 km north-south).
inline constexpr double kCellsPerDegree = 100.0;
int64_t cellOf(double degrees);

/// The cell ranges that cover every point within `radius_m` of `center`.
struct CellRange {
  int64_t min_lat = 0, max_lat = 0, min_lng = 0, max_lng = 0;
};
CellRange cellsAround(const Location& center, double radius_m);

}  // namespace strangler::driver_service::domain
