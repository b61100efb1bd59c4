#pragma once

#include <soci/soci.h>

#include "monolith/ports/repositories.h"
#include "strangler/common/db.h"

namespace strangler::monolith::persistence {

/// Passengers in the legacy `users` table (user_type = 1).
class SociPassengerRepository : public ports::PassengerRepository {
 public:
  explicit SociPassengerRepository(soci::session& sql) : sql_(sql) {}
  domain::Passenger insert(const domain::Passenger& passenger) override;
  std::optional<domain::Passenger> find(int64_t id) override;
  std::vector<domain::Passenger> list(const ports::Page& page) override;
  int64_t count() override;

 private:
  soci::session& sql_;
};

/// Drivers in the legacy `users` table (user_type = 2).
class SociDriverRepository : public ports::DriverRepository {
 public:
  explicit SociDriverRepository(soci::session& sql) : sql_(sql) {}
  domain::Driver insert(const domain::Driver& driver) override;
  std::optional<domain::Driver> find(int64_t id) override;
  std::vector<domain::Driver> list(const ports::Page& page) override;
  int64_t count() override;
  bool updateLocation(int64_t id, const domain::GeoPoint& at, domain::EpochSeconds now) override;
  bool updateStatus(int64_t id, domain::DriverStatus status, domain::EpochSeconds now) override;
  bool tryReserve(int64_t id, domain::EpochSeconds now) override;
  std::vector<domain::Driver> findAvailableIn(const domain::BoundingBox& box,
                                              int64_t limit) override;

 private:
  soci::session& sql_;
};

/// Trips in the legacy `trips` table.
class SociTripRepository : public ports::TripRepository {
 public:
  explicit SociTripRepository(soci::session& sql) : sql_(sql) {}
  domain::Trip insert(const domain::Trip& trip) override;
  std::optional<domain::Trip> find(int64_t id) override;
  bool markCompleted(int64_t id, domain::EpochSeconds now) override;
  int64_t countCompletedByDriver(int64_t driver_id) override;

 private:
  soci::session& sql_;
};

/// Invoices in the legacy `invoices` table.
class SociInvoiceRepository : public ports::InvoiceRepository {
 public:
  explicit SociInvoiceRepository(soci::session& sql) : sql_(sql) {}
  domain::Invoice insert(const domain::Invoice& invoice) override;
  std::optional<domain::Invoice> find(int64_t id) override;
  std::optional<domain::Invoice> findByTrip(int64_t trip_id) override;

 private:
  soci::session& sql_;
};

/// All four, bound to one session (and so to its open transaction).
class SociRepositories : public ports::Repositories {
 public:
  explicit SociRepositories(soci::session& sql)
      : passengers_(sql), drivers_(sql), trips_(sql), invoices_(sql) {}
  ports::PassengerRepository& passengers() override { return passengers_; }
  ports::DriverRepository& drivers() override { return drivers_; }
  ports::TripRepository& trips() override { return trips_; }
  ports::InvoiceRepository& invoices() override { return invoices_; }

 private:
  SociPassengerRepository passengers_;
  SociDriverRepository drivers_;
  SociTripRepository trips_;
  SociInvoiceRepository invoices_;
};

}  // namespace strangler::monolith::persistence
