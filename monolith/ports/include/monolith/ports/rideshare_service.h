#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "monolith/domain/entities.h"
#include "monolith/domain/rules.h"
#include "monolith/ports/repositories.h"
#include "strangler/common/result.h"

namespace strangler::monolith::ports {

template <typename T>
using Result = common::Result<T>;

/// Error codes the driving port returns; the HTTP adapter maps them to status codes.
namespace errors {
inline constexpr const char* kInvalid = "invalid_request";       // 400
inline constexpr const char* kNotFound = "not_found";            // 404
inline constexpr const char* kConflict = "conflict";             // 409
inline constexpr const char* kNoDriver = "no_driver_available";  // 409
}  // namespace errors

struct NewPassenger {
  std::string name;
  std::string phone;
  std::optional<std::string> email;
};

struct NewDriver {
  std::string name;
  std::string phone;
  domain::Vehicle vehicle;
  domain::DriverStatus status = domain::DriverStatus::kOffline;
  std::optional<domain::GeoPoint> location;
};

struct TripRequest {
  int64_t passenger_id = 0;
  domain::GeoPoint pickup;
  domain::GeoPoint dropoff;
};

/// A driver as the API shows it: the entity plus figures from other aggregates.
struct DriverView {
  domain::Driver driver;
  int64_t completed_trips = 0;
};

struct NearbyDriver {
  domain::Driver driver;
  int64_t distance_m = 0;
};

struct TripView {
  domain::Trip trip;
  std::optional<int64_t> invoice_id;
};

template <typename T>
struct Listing {
  std::vector<T> items;
  int64_t total = 0;
  Page page;
};

/// The RideShare use cases (driving port): what the HTTP adapter calls.
class RideShareService {
 public:
  virtual ~RideShareService() = default;

  /// Registers a passenger.
  virtual Result<domain::Passenger> registerPassenger(const NewPassenger& request) = 0;
  /// One passenger, or not_found.
  virtual Result<domain::Passenger> passenger(int64_t id) = 0;
  /// A page of passengers.
  virtual Result<Listing<domain::Passenger>> passengers(const Page& page) = 0;

  /// Registers a driver.
  virtual Result<DriverView> registerDriver(const NewDriver& request) = 0;
  /// One driver, or not_found.
  virtual Result<DriverView> driver(int64_t id) = 0;
  /// A page of drivers.
  virtual Result<Listing<DriverView>> drivers(const Page& page) = 0;
  /// Records where a driver is.
  virtual Result<DriverView> moveDriver(int64_t id, const domain::GeoPoint& at) = 0;
  /// Sets a driver offline or available (on_trip is owned by dispatch).
  virtual Result<DriverView> setDriverStatus(int64_t id, domain::DriverStatus status) = 0;
  /// Available drivers within `radius_m` of `center`, nearest first.
  virtual Result<std::vector<NearbyDriver>> nearbyDrivers(const domain::GeoPoint& center,
                                                          double radius_m, int64_t limit) = 0;

  /// Creates a trip and assigns the nearest available driver, or no_driver_available.
  virtual Result<TripView> requestTrip(const TripRequest& request) = 0;
  /// One trip, or not_found.
  virtual Result<TripView> trip(int64_t id) = 0;
  /// Completes an assigned trip, frees its driver and issues the invoice.
  virtual Result<TripView> completeTrip(int64_t id) = 0;
  /// One invoice, or not_found.
  virtual Result<domain::Invoice> invoice(int64_t id) = 0;

  /// Whether the storage answers (for /healthz).
  virtual bool healthy() = 0;
};

}  // namespace strangler::monolith::ports
