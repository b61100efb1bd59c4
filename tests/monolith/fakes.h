#pragma once

// In-memory doubles of the monolith's driven ports, for use-case tests without a database.

#include <algorithm>
#include <map>
#include <vector>

#include "monolith/ports/clock.h"
#include "monolith/ports/notifier.h"
#include "monolith/ports/unit_of_work.h"

namespace strangler::monolith::testing {

struct FakeTables {
  std::map<int64_t, domain::Passenger> passengers;
  std::map<int64_t, domain::Driver> drivers;
  std::map<int64_t, domain::Trip> trips;
  std::map<int64_t, domain::Invoice> invoices;
  int64_t next_user_id = 1;
  int64_t next_trip_id = 1;
  int64_t next_invoice_id = 1;
};

template <typename T>
std::vector<T> pageOf(const std::map<int64_t, T>& rows, const ports::Page& page) {
  std::vector<T> out;
  int64_t skipped = 0;
  for (const auto& [id, row] : rows) {
    if (skipped++ < page.offset) continue;
    if (static_cast<int64_t>(out.size()) >= page.limit) break;
    out.push_back(row);
  }
  return out;
}

template <typename T>
std::optional<T> findIn(const std::map<int64_t, T>& rows, int64_t id) {
  const auto it = rows.find(id);
  if (it == rows.end()) return std::nullopt;
  return it->second;
}

class FakePassengers : public ports::PassengerRepository {
 public:
  explicit FakePassengers(FakeTables& t) : t_(t) {}
  domain::Passenger insert(const domain::Passenger& p) override {
    auto stored = p;
    stored.id = t_.next_user_id++;
    return t_.passengers[stored.id] = stored;
  }
  std::optional<domain::Passenger> find(int64_t id) override { return findIn(t_.passengers, id); }
  std::vector<domain::Passenger> list(const ports::Page& page) override {
    return pageOf(t_.passengers, page);
  }
  int64_t count() override { return static_cast<int64_t>(t_.passengers.size()); }

 private:
  FakeTables& t_;
};

class FakeDrivers : public ports::DriverRepository {
 public:
  explicit FakeDrivers(FakeTables& t) : t_(t) {}
  domain::Driver insert(const domain::Driver& d) override {
    auto stored = d;
    stored.id = t_.next_user_id++;
    return t_.drivers[stored.id] = stored;
  }
  std::optional<domain::Driver> find(int64_t id) override { return findIn(t_.drivers, id); }
  std::vector<domain::Driver> list(const ports::Page& page) override {
    return pageOf(t_.drivers, page);
  }
  int64_t count() override { return static_cast<int64_t>(t_.drivers.size()); }
  bool updateLocation(int64_t id, const domain::GeoPoint& at, domain::EpochSeconds now) override {
    if (!t_.drivers.count(id)) return false;
    t_.drivers[id].location = at;
    t_.drivers[id].location_updated_at = now;
    return true;
  }
  bool updateStatus(int64_t id, domain::DriverStatus status, domain::EpochSeconds) override {
    if (!t_.drivers.count(id)) return false;
    t_.drivers[id].status = status;
    return true;
  }
  bool tryReserve(int64_t id, domain::EpochSeconds) override {
    if (!t_.drivers.count(id) || t_.drivers[id].status != domain::DriverStatus::kAvailable)
      return false;
    t_.drivers[id].status = domain::DriverStatus::kOnTrip;
    return true;
  }
  std::vector<domain::Driver> findAvailableIn(const domain::BoundingBox& box,
                                              int64_t limit) override {
    std::vector<domain::Driver> out;
    for (const auto& [id, d] : t_.drivers) {
      if (d.status != domain::DriverStatus::kAvailable || !d.location) continue;
      if (d.location->lat_e6 < box.min_lat_e6 || d.location->lat_e6 > box.max_lat_e6) continue;
      if (d.location->lng_e6 < box.min_lng_e6 || d.location->lng_e6 > box.max_lng_e6) continue;
      if (static_cast<int64_t>(out.size()) < limit) out.push_back(d);
    }
    return out;
  }

 private:
  FakeTables& t_;
};

class FakeTrips : public ports::TripRepository {
 public:
  explicit FakeTrips(FakeTables& t) : t_(t) {}
  domain::Trip insert(const domain::Trip& trip) override {
    auto stored = trip;
    stored.id = t_.next_trip_id++;
    return t_.trips[stored.id] = stored;
  }
  std::optional<domain::Trip> find(int64_t id) override { return findIn(t_.trips, id); }
  bool markCompleted(int64_t id, domain::EpochSeconds now) override {
    if (!t_.trips.count(id) || t_.trips[id].status != domain::TripStatus::kAssigned) return false;
    t_.trips[id].status = domain::TripStatus::kCompleted;
    t_.trips[id].completed_at = now;
    return true;
  }
  int64_t countCompletedByDriver(int64_t driver_id) override {
    return std::count_if(t_.trips.begin(), t_.trips.end(), [&](const auto& entry) {
      return entry.second.driver_id == driver_id &&
             entry.second.status == domain::TripStatus::kCompleted;
    });
  }

 private:
  FakeTables& t_;
};

class FakeInvoices : public ports::InvoiceRepository {
 public:
  explicit FakeInvoices(FakeTables& t) : t_(t) {}
  domain::Invoice insert(const domain::Invoice& invoice) override {
    auto stored = invoice;
    stored.id = t_.next_invoice_id++;
    return t_.invoices[stored.id] = stored;
  }
  std::optional<domain::Invoice> find(int64_t id) override { return findIn(t_.invoices, id); }
  std::optional<domain::Invoice> findByTrip(int64_t trip_id) override {
    for (const auto& [id, invoice] : t_.invoices)
      if (invoice.trip_id == trip_id) return invoice;
    return std::nullopt;
  }

 private:
  FakeTables& t_;
};

class FakeRepositories : public ports::Repositories {
 public:
  explicit FakeRepositories(FakeTables& t) : passengers_(t), drivers_(t), trips_(t), invoices_(t) {}
  ports::PassengerRepository& passengers() override { return passengers_; }
  ports::DriverRepository& drivers() override { return drivers_; }
  ports::TripRepository& trips() override { return trips_; }
  ports::InvoiceRepository& invoices() override { return invoices_; }

 private:
  FakePassengers passengers_;
  FakeDrivers drivers_;
  FakeTrips trips_;
  FakeInvoices invoices_;
};

/// Transactions by copy: work runs on a copy of the tables, kept only when it commits.
class FakeUnitOfWork : public ports::UnitOfWork {
 public:
  void run(Mode, const std::function<bool(ports::Repositories&)>& work) override {
    FakeTables draft = tables;
    FakeRepositories repos(draft);
    if (work(repos)) tables = std::move(draft);
  }
  FakeTables tables;
};

class RecordingNotifier : public ports::Notifier {
 public:
  void tripAssigned(const domain::Trip& trip, const domain::Driver& driver) override {
    assigned.emplace_back(trip.id, driver.id);
  }
  void invoiceIssued(const domain::Trip& trip, const domain::Invoice& invoice) override {
    invoiced.emplace_back(trip.id, invoice.id);
  }
  std::vector<std::pair<int64_t, int64_t>> assigned;
  std::vector<std::pair<int64_t, int64_t>> invoiced;
};

class FixedClock : public ports::Clock {
 public:
  domain::EpochSeconds now() override { return time; }
  domain::EpochSeconds time = 1800000000;
};

}  // namespace strangler::monolith::testing
