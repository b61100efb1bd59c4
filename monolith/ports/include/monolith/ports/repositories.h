#pragma once

#include <cstdint>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include "monolith/domain/entities.h"

namespace strangler::monolith::ports {

/// Thrown by persistence adapters when the database cannot do its part (unreachable,
/// locked too long, constraint broken by a bug). Handlers turn it into a 503.
class StorageError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

/// One page of a listing.
struct Page {
  int64_t limit = 50;
  int64_t offset = 0;
};

/// Passengers, stored in the legacy `users` table (user_type 1).
class PassengerRepository {
 public:
  virtual ~PassengerRepository() = default;
  /// Stores a new passenger; returns it with its id.
  virtual domain::Passenger insert(const domain::Passenger& passenger) = 0;
  /// The passenger with `id`, if any.
  virtual std::optional<domain::Passenger> find(int64_t id) = 0;
  /// Passengers by id, one page.
  virtual std::vector<domain::Passenger> list(const Page& page) = 0;
  /// How many passengers exist.
  virtual int64_t count() = 0;
};

/// Drivers, stored in the legacy `users` table (user_type 2).
class DriverRepository {
 public:
  virtual ~DriverRepository() = default;
  /// Stores a new driver; returns it with its id.
  virtual domain::Driver insert(const domain::Driver& driver) = 0;
  /// The driver with `id`, if any.
  virtual std::optional<domain::Driver> find(int64_t id) = 0;
  /// Drivers by id, one page.
  virtual std::vector<domain::Driver> list(const Page& page) = 0;
  /// How many drivers exist.
  virtual int64_t count() = 0;
  /// Records a driver's position; false when the driver does not exist.
  virtual bool updateLocation(int64_t id, const domain::GeoPoint& at, domain::EpochSeconds now) = 0;
  /// Sets a driver's status unconditionally; false when the driver does not exist.
  virtual bool updateStatus(int64_t id, domain::DriverStatus status, domain::EpochSeconds now) = 0;
  /// Atomically moves a driver from available to on_trip; false if someone else got there first.
  virtual bool tryReserve(int64_t id, domain::EpochSeconds now) = 0;
  /// Available drivers whose position lies inside `box` (at most `limit`).
  virtual std::vector<domain::Driver> findAvailableIn(const domain::BoundingBox& box,
                                                      int64_t limit) = 0;
};

/// Trips, stored in the legacy `trips` table.
class TripRepository {
 public:
  virtual ~TripRepository() = default;
  /// Stores a new trip; returns it with its id.
  virtual domain::Trip insert(const domain::Trip& trip) = 0;
  /// The trip with `id`, if any.
  virtual std::optional<domain::Trip> find(int64_t id) = 0;
  /// Moves an assigned trip to completed; false when it was not in the assigned state.
  virtual bool markCompleted(int64_t id, domain::EpochSeconds now) = 0;
  /// How many trips a driver has completed.
  virtual int64_t countCompletedByDriver(int64_t driver_id) = 0;
};

/// Invoices, stored in the legacy `invoices` table (one per completed trip).
class InvoiceRepository {
 public:
  virtual ~InvoiceRepository() = default;
  /// Stores a new invoice; returns it with its id.
  virtual domain::Invoice insert(const domain::Invoice& invoice) = 0;
  /// The invoice with `id`, if any.
  virtual std::optional<domain::Invoice> find(int64_t id) = 0;
  /// The invoice of a trip, if it has one.
  virtual std::optional<domain::Invoice> findByTrip(int64_t trip_id) = 0;
};

/// The repositories of one unit of work, all bound to the same transaction.
class Repositories {
 public:
  virtual ~Repositories() = default;
  virtual PassengerRepository& passengers() = 0;
  virtual DriverRepository& drivers() = 0;
  virtual TripRepository& trips() = 0;
  virtual InvoiceRepository& invoices() = 0;
};

}  // namespace strangler::monolith::ports
