#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <stdexcept>
#include <vector>

#include "driver_service/domain/driver.h"
#include "strangler/common/result.h"

namespace strangler::driver_service::ports {

/// Thrown by the store when the database fails; the HTTP adapters answer 503.
class StorageError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

/// The service's own driver table (driven port).
class DriverStore {
 public:
  virtual ~DriverStore() = default;
  /// Stores a new driver and returns it with its id.
  virtual domain::Driver insert(const domain::Driver& driver) = 0;
  /// The driver with `id`, if any.
  virtual std::optional<domain::Driver> find(int64_t id) = 0;
  /// Drivers by id, `limit` from `offset`.
  virtual std::vector<domain::Driver> list(int64_t limit, int64_t offset) = 0;
  /// How many drivers exist.
  virtual int64_t count() = 0;
  /// Replaces a stored driver; false when it does not exist.
  virtual bool update(const domain::Driver& driver) = 0;
  /// Available drivers in the grid cells of `cells` (a superset of any radius query).
  virtual std::vector<domain::Driver> availableIn(const domain::CellRange& cells) = 0;
};

/// Figures the service does not own: read from the monolith (driven port).
class TripStats {
 public:
  virtual ~TripStats() = default;
  /// How many trips a driver completed, or nullopt when the owner can't tell right now.
  virtual std::optional<int64_t> completedTrips(int64_t driver_id) = 0;
};

/// The current time (a port so tests control it).
class Clock {
 public:
  virtual ~Clock() = default;
  virtual domain::EpochSeconds now() = 0;
};

/// Error codes of the driving port.
namespace errors {
inline constexpr const char* kInvalid = "invalid_request";
inline constexpr const char* kNotFound = "not_found";
inline constexpr const char* kConflict = "conflict";
}  // namespace errors

struct Registration {
  std::string name;
  std::string phone;
  domain::Vehicle vehicle;
  domain::DriverStatus status = domain::DriverStatus::kOffline;
  std::optional<domain::Location> location;
};

struct NearbyDriver {
  domain::Driver driver;
  double distance_m = 0;
};

/// The driver use cases (driving port), used by the modern API and, through the ACL, by the
/// legacy API.
class DriverService {
 public:
  virtual ~DriverService() = default;
  virtual common::Result<domain::Driver> registerDriver(const Registration& request) = 0;
  virtual common::Result<domain::Driver> driver(int64_t id) = 0;
  /// A page of drivers (limit clamped to 1..500) and the total count.
  virtual common::Result<std::pair<std::vector<domain::Driver>, int64_t>> drivers(
      int64_t limit, int64_t offset) = 0;
  virtual common::Result<domain::Driver> moveDriver(int64_t id, const domain::Location& at) = 0;
  virtual common::Result<domain::Driver> setStatus(int64_t id, domain::DriverStatus status) = 0;
  /// Available drivers within `radius_m` (0 < r <= 50 km), nearest first, ties by id.
  virtual common::Result<std::vector<NearbyDriver>> nearby(const domain::Location& center,
                                                           double radius_m, int64_t limit) = 0;
  /// Completed trips, from the monolith (nullopt when it can't be reached and nothing is cached).
  virtual std::optional<int64_t> completedTrips(int64_t id) = 0;
  virtual bool healthy() = 0;
};

}  // namespace strangler::driver_service::ports
