#include "driver_service/application/driver_service_impl.h"

#include <algorithm>

namespace strangler::driver_service::application {
namespace {

using common::Error;
namespace errors = ports::errors;

Error notFound(int64_t id) {
  return Error{errors::kNotFound, "driver " + std::to_string(id) + " not found"};
}

std::string describe(const std::vector<domain::Violation>& violations) {
  std::string message;
  for (const auto& v : violations)
    message += (message.empty() ? "" : "; ") + v.field + ": " + v.message;
  return message;
}

}  // namespace

common::Result<domain::Driver> DriverServiceImpl::registerDriver(
    const ports::Registration& request) {
  auto violations = domain::checkDriver(request.name, request.phone, request.vehicle);
  if (request.status == domain::DriverStatus::kOnTrip)
    violations.push_back({"status", "a new driver is offline or available"});
  if (request.location) {
    if (auto why = domain::checkLocation(*request.location))
      violations.push_back({"location", *why});
  }
  if (!violations.empty()) return Error{errors::kInvalid, describe(violations)};
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
  return store_.insert(driver);
}

common::Result<domain::Driver> DriverServiceImpl::driver(int64_t id) {
  auto found = store_.find(id);
  if (!found) return notFound(id);
  return *found;
}

common::Result<std::pair<std::vector<domain::Driver>, int64_t>> DriverServiceImpl::drivers(
    int64_t limit, int64_t offset) {
  limit = std::clamp<int64_t>(limit, 1, 500);
  offset = std::max<int64_t>(offset, 0);
  return std::pair{store_.list(limit, offset), store_.count()};
}

common::Result<domain::Driver> DriverServiceImpl::moveDriver(int64_t id,
                                                             const domain::Location& at) {
  if (auto why = domain::checkLocation(at)) return Error{errors::kInvalid, *why};
  std::lock_guard lock(write_mutex_);
  auto found = store_.find(id);
  if (!found) return notFound(id);
  const auto now = clock_.now();
  found->location = at;
  found->location_updated_at = now;
  found->updated_at = now;
  store_.update(*found);
  return *found;
}

common::Result<domain::Driver> DriverServiceImpl::setStatus(int64_t id,
                                                            domain::DriverStatus status) {
  std::lock_guard lock(write_mutex_);
  auto found = store_.find(id);
  if (!found) return notFound(id);
  if (auto why = domain::checkStatusChange(found->status, status)) {
    return Error{status == domain::DriverStatus::kOnTrip ? errors::kInvalid : errors::kConflict,
                 *why};
  }
  found->status = status;
  found->updated_at = clock_.now();
  store_.update(*found);
  return *found;
}

common::Result<std::vector<ports::NearbyDriver>> DriverServiceImpl::nearby(
    const domain::Location& center, double radius_m, int64_t limit) {
  if (auto why = domain::checkLocation(center)) return Error{errors::kInvalid, *why};
  if (!(radius_m > 0) || radius_m > 50000) {
    return Error{errors::kInvalid, "radius_km must be within (0, 50]"};
  }
  limit = std::clamp<int64_t>(limit, 1, 100);
  std::vector<ports::NearbyDriver> result;
  for (auto& driver : store_.availableIn(domain::cellsAround(center, radius_m))) {
    if (!driver.location) continue;
    const double distance = domain::distanceMeters(*driver.location, center);
    if (distance <= radius_m) result.push_back({std::move(driver), distance});
  }
  std::sort(result.begin(), result.end(), [](const auto& a, const auto& b) {
    if (a.distance_m != b.distance_m) return a.distance_m < b.distance_m;
    return a.driver.id < b.driver.id;
  });
  if (static_cast<int64_t>(result.size()) > limit) result.resize(static_cast<size_t>(limit));
  return result;
}

bool DriverServiceImpl::healthy() {
  try {
    store_.count();
    return true;
  } catch (const ports::StorageError&) {
    return false;
  }
}

}  // namespace strangler::driver_service::application
