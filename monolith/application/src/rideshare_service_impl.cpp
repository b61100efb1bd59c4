#include "monolith/application/rideshare_service_impl.h"

#include <algorithm>
#include <cmath>
#include <utility>

namespace strangler::monolith::application {
namespace {

using common::Error;
using ports::Result;
namespace errors = ports::errors;

Error notFound(const std::string& what, int64_t id) {
  return Error{errors::kNotFound, what + " " + std::to_string(id) + " not found"};
}

Error invalid(const std::vector<domain::Violation>& violations) {
  std::string message;
  for (const auto& v : violations) {
    if (!message.empty()) message += "; ";
    message += v.field + ": " + v.message;
  }
  return Error{errors::kInvalid, message};
}

ports::Page clampPage(ports::Page page) {
  page.limit = std::clamp<int64_t>(page.limit, 1, 500);
  page.offset = std::max<int64_t>(page.offset, 0);
  return page;
}

ports::DriverView viewOf(ports::Repositories& repos, domain::Driver driver) {
  const int64_t completed = repos.trips().countCompletedByDriver(driver.id);
  return ports::DriverView{std::move(driver), completed};
}

}  // namespace

RideShareServiceImpl::RideShareServiceImpl(ports::UnitOfWork& uow, ports::Notifier& notifier,
                                           ports::Clock& clock, domain::FareSchedule fares)
    : uow_(uow), notifier_(notifier), clock_(clock), fares_(std::move(fares)) {}

Result<domain::Passenger> RideShareServiceImpl::registerPassenger(
    const ports::NewPassenger& request) {
  auto violations = domain::checkContact(request.name, request.phone, request.email);
  if (!violations.empty()) return invalid(violations);
  domain::Passenger passenger{0, request.name, request.phone, request.email, clock_.now()};
  uow_.run(ports::UnitOfWork::Mode::kWrite, [&](ports::Repositories& repos) {
    passenger = repos.passengers().insert(passenger);
    return true;
  });
  return passenger;
}

Result<domain::Passenger> RideShareServiceImpl::passenger(int64_t id) {
  std::optional<domain::Passenger> found;
  uow_.run(ports::UnitOfWork::Mode::kRead, [&](ports::Repositories& repos) {
    found = repos.passengers().find(id);
    return true;
  });
  if (!found) return notFound("passenger", id);
  return *found;
}

Result<ports::Listing<domain::Passenger>> RideShareServiceImpl::passengers(
    const ports::Page& page) {
  ports::Listing<domain::Passenger> listing;
  listing.page = clampPage(page);
  uow_.run(ports::UnitOfWork::Mode::kRead, [&](ports::Repositories& repos) {
    listing.items = repos.passengers().list(listing.page);
    listing.total = repos.passengers().count();
    return true;
  });
  return listing;
}

Result<ports::DriverView> RideShareServiceImpl::registerDriver(const ports::NewDriver& request) {
  auto violations = domain::checkContact(request.name, request.phone, std::nullopt);
  auto vehicle_violations = domain::checkVehicle(request.vehicle);
  violations.insert(violations.end(), vehicle_violations.begin(), vehicle_violations.end());
  if (request.status == domain::DriverStatus::kOnTrip) {
    violations.push_back({"status", "a new driver is offline or available"});
  }
  if (!violations.empty()) return invalid(violations);
  const auto now = clock_.now();
  domain::Driver driver;
  driver.name = request.name;
  driver.phone = request.phone;
  driver.vehicle = request.vehicle;
  driver.status = request.status;
  driver.location = request.location;
  if (request.location) driver.location_updated_at = now;
  driver.created_at = now;
  driver.updated_at = now;
  uow_.run(ports::UnitOfWork::Mode::kWrite, [&](ports::Repositories& repos) {
    driver = repos.drivers().insert(driver);
    return true;
  });
  return ports::DriverView{driver, 0};
}

Result<ports::DriverView> RideShareServiceImpl::driver(int64_t id) {
  std::optional<ports::DriverView> view;
  uow_.run(ports::UnitOfWork::Mode::kRead, [&](ports::Repositories& repos) {
    if (auto found = repos.drivers().find(id)) view = viewOf(repos, std::move(*found));
    return true;
  });
  if (!view) return notFound("driver", id);
  return *view;
}

Result<ports::Listing<ports::DriverView>> RideShareServiceImpl::drivers(const ports::Page& page) {
  ports::Listing<ports::DriverView> listing;
  listing.page = clampPage(page);
  uow_.run(ports::UnitOfWork::Mode::kRead, [&](ports::Repositories& repos) {
    for (auto& driver : repos.drivers().list(listing.page)) {
      listing.items.push_back(viewOf(repos, std::move(driver)));
    }
    listing.total = repos.drivers().count();
    return true;
  });
  return listing;
}

Result<ports::DriverView> RideShareServiceImpl::moveDriver(int64_t id, const domain::GeoPoint& at) {
  if (auto why = domain::checkDegrees(at.latDegrees(), at.lngDegrees())) {
    return Error{errors::kInvalid, *why};
  }
  std::optional<ports::DriverView> view;
  uow_.run(ports::UnitOfWork::Mode::kWrite, [&](ports::Repositories& repos) {
    if (!repos.drivers().updateLocation(id, at, clock_.now())) return false;
    view = viewOf(repos, *repos.drivers().find(id));
    return true;
  });
  if (!view) return notFound("driver", id);
  return *view;
}

Result<ports::DriverView> RideShareServiceImpl::setDriverStatus(int64_t id,
                                                                domain::DriverStatus status) {
  std::optional<ports::DriverView> view;
  std::optional<Error> refused;
  uow_.run(ports::UnitOfWork::Mode::kWrite, [&](ports::Repositories& repos) {
    auto found = repos.drivers().find(id);
    if (!found) return false;
    if (auto why = domain::checkStatusChange(found->status, status)) {
      refused = Error{
          status == domain::DriverStatus::kOnTrip ? errors::kInvalid : errors::kConflict, *why};
      return false;
    }
    repos.drivers().updateStatus(id, status, clock_.now());
    view = viewOf(repos, *repos.drivers().find(id));
    return true;
  });
  if (refused) return *refused;
  if (!view) return notFound("driver", id);
  return *view;
}

Result<std::vector<ports::NearbyDriver>> RideShareServiceImpl::nearbyDrivers(
    const domain::GeoPoint& center, double radius_m, int64_t limit) {
  if (auto why = domain::checkDegrees(center.latDegrees(), center.lngDegrees())) {
    return Error{errors::kInvalid, *why};
  }
  if (!(radius_m > 0) || radius_m > 50000) {
    return Error{errors::kInvalid, "radius_km must be within (0, 50]"};
  }
  limit = std::clamp<int64_t>(limit, 1, 100);
  std::vector<domain::Driver> in_box;
  uow_.run(ports::UnitOfWork::Mode::kRead, [&](ports::Repositories& repos) {
    in_box = repos.drivers().findAvailableIn(domain::boundingBox(center, radius_m), 5000);
    return true;
  });
  std::vector<ports::NearbyDriver> result;
  for (const auto& candidate : domain::rankCandidates(in_box, center, radius_m)) {
    if (static_cast<int64_t>(result.size()) >= limit) break;
    const auto it = std::find_if(in_box.begin(), in_box.end(),
                                 [&](const auto& d) { return d.id == candidate.driver_id; });
    result.push_back({*it, static_cast<int64_t>(std::llround(candidate.distance_m))});
  }
  return result;
}

Result<ports::TripView> RideShareServiceImpl::requestTrip(const ports::TripRequest& request) {
  for (const auto& [field, point] :
       {std::pair{"pickup", request.pickup}, std::pair{"dropoff", request.dropoff}}) {
    if (auto why = domain::checkDegrees(point.latDegrees(), point.lngDegrees())) {
      return Error{errors::kInvalid, std::string(field) + "." + *why};
    }
  }
  std::optional<Error> refused;
  std::optional<domain::Trip> trip;
  std::optional<domain::Driver> assigned;
  uow_.run(ports::UnitOfWork::Mode::kWrite, [&](ports::Repositories& repos) {
    if (!repos.passengers().find(request.passenger_id)) {
      refused = notFound("passenger", request.passenger_id);
      return false;
    }
    const auto now = clock_.now();
    const auto in_box = repos.drivers().findAvailableIn(
        domain::boundingBox(request.pickup, domain::kDispatchRadiusM), 5000);
    for (const auto& candidate :
         domain::rankCandidates(in_box, request.pickup, domain::kDispatchRadiusM)) {
      // Another request may have taken this driver since we read it: try the next one.
      if (!repos.drivers().tryReserve(candidate.driver_id, now)) continue;
      assigned = repos.drivers().find(candidate.driver_id);
      break;
    }
    if (!assigned) {
      refused = Error{errors::kNoDriver,
                      "no available driver within " +
                          std::to_string(static_cast<int>(domain::kDispatchRadiusM / 1000)) +
                          " km of the pickup point"};
      return false;
    }
    domain::Trip draft;
    draft.passenger_id = request.passenger_id;
    draft.driver_id = assigned->id;
    draft.status = domain::TripStatus::kAssigned;
    draft.pickup = request.pickup;
    draft.dropoff = request.dropoff;
    draft.distance_m =
        static_cast<int64_t>(std::llround(domain::distanceMeters(request.pickup, request.dropoff)));
    draft.fare_cents = fares_.fareCents(draft.distance_m);
    draft.requested_at = now;
    draft.updated_at = now;
    trip = repos.trips().insert(draft);
    return true;
  });
  if (refused) return *refused;
  notifier_.tripAssigned(*trip, *assigned);
  return ports::TripView{*trip, std::nullopt};
}

Result<ports::TripView> RideShareServiceImpl::trip(int64_t id) {
  std::optional<ports::TripView> view;
  uow_.run(ports::UnitOfWork::Mode::kRead, [&](ports::Repositories& repos) {
    auto found = repos.trips().find(id);
    if (!found) return true;
    std::optional<int64_t> invoice_id;
    if (auto invoice = repos.invoices().findByTrip(id)) invoice_id = invoice->id;
    view = ports::TripView{*found, invoice_id};
    return true;
  });
  if (!view) return notFound("trip", id);
  return *view;
}

Result<ports::TripView> RideShareServiceImpl::completeTrip(int64_t id) {
  std::optional<Error> refused;
  std::optional<domain::Trip> trip;
  std::optional<domain::Invoice> invoice;
  uow_.run(ports::UnitOfWork::Mode::kWrite, [&](ports::Repositories& repos) {
    auto found = repos.trips().find(id);
    if (!found) {
      refused = notFound("trip", id);
      return false;
    }
    const auto now = clock_.now();
    if (!repos.trips().markCompleted(id, now)) {
      refused = Error{errors::kConflict, std::string("trip ") + std::to_string(id) + " is " +
                                             domain::toString(found->status) +
                                             ", only an assigned trip can be completed"};
      return false;
    }
    repos.drivers().updateStatus(found->driver_id, domain::DriverStatus::kAvailable, now);
    domain::Invoice draft;
    draft.trip_id = id;
    draft.passenger_id = found->passenger_id;
    draft.amount_cents = found->fare_cents;
    draft.currency = fares_.currency;
    draft.status = domain::InvoiceStatus::kIssued;
    draft.issued_at = now;
    invoice = repos.invoices().insert(draft);
    trip = repos.trips().find(id);
    return true;
  });
  if (refused) return *refused;
  notifier_.invoiceIssued(*trip, *invoice);
  return ports::TripView{*trip, invoice->id};
}

Result<domain::Invoice> RideShareServiceImpl::invoice(int64_t id) {
  std::optional<domain::Invoice> found;
  uow_.run(ports::UnitOfWork::Mode::kRead, [&](ports::Repositories& repos) {
    found = repos.invoices().find(id);
    return true;
  });
  if (!found) return notFound("invoice", id);
  return *found;
}

bool RideShareServiceImpl::healthy() {
  try {
    uow_.run(ports::UnitOfWork::Mode::kRead, [&](ports::Repositories& repos) {
      repos.drivers().count();
      return true;
    });
    return true;
  } catch (const ports::StorageError&) {
    return false;
  }
}

}  // namespace strangler::monolith::application
