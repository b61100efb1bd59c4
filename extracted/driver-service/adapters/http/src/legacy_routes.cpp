#include <cmath>
#include <cstdlib>

#include "driver_service/http/routes.h"
#include "strangler/acl/legacy_drivers.h"

namespace strangler::driver_service::http {
namespace {

using common::ApiCall;
using common::ApiReply;
using common::errorReply;
using nlohmann::json;
namespace legacy = acl::legacy_drivers;

int statusFor(const std::string& code) {
  if (code == ports::errors::kInvalid) return 400;
  if (code == ports::errors::kNotFound) return 404;
  if (code == ports::errors::kConflict) return 409;
  return 500;
}

ApiReply failure(const common::Error& error) {
  const auto legacy_error = legacy::toLegacyError(error);
  return errorReply(statusFor(legacy_error.code), legacy_error.code, legacy_error.message);
}

// Legacy ids in paths: positive decimal integers; anything else names no driver (404).
std::optional<int64_t> pathId(const ApiCall& call) {
  const auto& text = call.params.at("id");
  if (text.empty() || text.size() > 18 || text.find_first_not_of("0123456789") != std::string::npos)
    return std::nullopt;
  const int64_t id = std::stoll(text);
  if (id <= 0) return std::nullopt;
  return id;
}

ApiReply unknownDriver(const ApiCall& call) {
  return errorReply(404, ports::errors::kNotFound, "driver " + call.params.at("id") + " not found");
}

// A legacy query number: absent → fallback (or "is required"), unparsable → "must be a number".
std::optional<double> queryNumber(const ApiCall& call, const std::string& key,
                                  std::string& problems,
                                  std::optional<double> fallback = std::nullopt) {
  const auto add = [&](const std::string& message) {
    problems += (problems.empty() ? "" : "; ") + key + ": " + message;
  };
  const auto it = call.query.find(key);
  if (it == call.query.end() || it->second.empty()) {
    if (!fallback) add("is required");
    return fallback;
  }
  char* end = nullptr;
  const double value = std::strtod(it->second.c_str(), &end);
  if (end == it->second.c_str() || *end != '\0' || !std::isfinite(value)) {
    add("must be a number");
    return std::nullopt;
  }
  return value;
}

ApiReply driverReply(ports::DriverService& service, const domain::Driver& driver,
                     int status = 200) {
  const auto trips = service.completedTrips(driver.id);
  ApiReply reply{status, legacy::toLegacy(driver, trips.value_or(0)), {}};
  if (!trips) reply.headers["Warning"] = "199 driver-service \"completed_trips unavailable\"";
  return reply;
}

ApiReply postDriver(ports::DriverService& service, const ApiCall& call) {
  auto body = common::parseJsonObject(call.body);
  if (!body.ok()) return failure(body.error());
  auto registration = legacy::registrationFromLegacy(*body);
  if (!registration.ok()) return failure(registration.error());
  auto driver = service.registerDriver(*registration);
  if (!driver.ok()) return failure(driver.error());
  // A new driver has no trips anywhere yet: no need to ask the monolith.
  ApiReply reply{201, legacy::toLegacy(*driver, 0), {}};
  reply.headers["Location"] = "/api/drivers/" + std::to_string(driver->id);
  return reply;
}

ApiReply listDrivers(ports::DriverService& service, const ApiCall& call) {
  std::string problems;
  const auto limit = queryNumber(call, "limit", problems, 50.0);
  const auto offset = queryNumber(call, "offset", problems, 0.0);
  if (!problems.empty()) return errorReply(400, ports::errors::kInvalid, problems);
  const int64_t clamped_limit = std::clamp<int64_t>(std::llround(*limit), 1, 500);
  const int64_t clamped_offset = std::max<int64_t>(std::llround(*offset), 0);
  auto page = service.drivers(clamped_limit, clamped_offset);
  if (!page.ok()) return failure(page.error());
  json data = json::array();
  bool degraded = false;
  for (const auto& driver : page->first) {
    const auto trips = service.completedTrips(driver.id);
    degraded = degraded || !trips;
    data.push_back(legacy::toLegacy(driver, trips.value_or(0)));
  }
  ApiReply reply{200,
                 json{{"data", std::move(data)},
                      {"total", page->second},
                      {"limit", clamped_limit},
                      {"offset", clamped_offset}},
                 {}};
  if (degraded) reply.headers["Warning"] = "199 driver-service \"completed_trips unavailable\"";
  return reply;
}

ApiReply nearby(ports::DriverService& service, const ApiCall& call) {
  std::string problems;
  const auto lat = queryNumber(call, "lat", problems);
  const auto lng = queryNumber(call, "lng", problems);
  const auto radius_km = queryNumber(call, "radius_km", problems, 5.0);
  const auto limit = queryNumber(call, "limit", problems, 20.0);
  if (lat && lng) {
    if (auto why = domain::checkLocation({*lat, *lng}))
      problems += (problems.empty() ? "" : "; ") + std::string("lat/lng: ") + *why;
  }
  if (!problems.empty()) return errorReply(400, ports::errors::kInvalid, problems);
  const domain::Location center{legacy::legacyDegrees(*lat), legacy::legacyDegrees(*lng)};
  auto found = service.nearby(center, *radius_km * 1000.0, std::llround(*limit));
  if (!found.ok()) return failure(found.error());
  json data = json::array();
  for (const auto& item : *found)
    data.push_back(legacy::toLegacyNearby(item.driver, item.distance_m));
  return ApiReply{200, json{{"data", std::move(data)}}, {}};
}

ApiReply getDriver(ports::DriverService& service, const ApiCall& call) {
  const auto id = pathId(call);
  if (!id) return unknownDriver(call);
  auto driver = service.driver(*id);
  if (!driver.ok()) return failure(driver.error());
  return driverReply(service, *driver);
}

ApiReply putLocation(ports::DriverService& service, const ApiCall& call) {
  const auto id = pathId(call);
  if (!id) return unknownDriver(call);
  auto body = common::parseJsonObject(call.body);
  if (!body.ok()) return failure(body.error());
  auto location = legacy::locationFromLegacy(*body);
  if (!location.ok()) return failure(location.error());
  auto driver = service.moveDriver(*id, *location);
  if (!driver.ok()) return failure(driver.error());
  return driverReply(service, *driver);
}

ApiReply putStatus(ports::DriverService& service, const ApiCall& call) {
  const auto id = pathId(call);
  if (!id) return unknownDriver(call);
  auto body = common::parseJsonObject(call.body);
  if (!body.ok()) return failure(body.error());
  auto status = legacy::statusChangeFromLegacy(*body);
  if (!status.ok()) return failure(status.error());
  auto driver = service.setStatus(*id, *status);
  if (!driver.ok()) return failure(driver.error());
  return driverReply(service, *driver);
}

}  // namespace

std::vector<common::ApiRoute> legacyRoutes(ports::DriverService& service) {
  const auto bind = [&service](ApiReply (*handler)(ports::DriverService&, const ApiCall&)) {
    return [&service, handler](const ApiCall& call) { return handler(service, call); };
  };
  // Same order as the monolith's table, so 405 answers list methods the same way.
  return {
      {"POST", "/api/drivers", bind(postDriver)},
      {"GET", "/api/drivers", bind(listDrivers)},
      {"GET", "/api/drivers/nearby", bind(nearby)},
      {"GET", "/api/drivers/{id}", bind(getDriver)},
      {"PUT", "/api/drivers/{id}/location", bind(putLocation)},
      {"PUT", "/api/drivers/{id}/status", bind(putStatus)},
  };
}

}  // namespace strangler::driver_service::http
