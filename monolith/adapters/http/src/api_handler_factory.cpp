#include "monolith/http/api_handler_factory.h"

#include "strangler/common/json_api.h"

#include <cmath>
#include <cstdlib>
#include <functional>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "json_mapping.h"

namespace strangler::monolith::http {
namespace {

using common::errorReply;
using nlohmann::json;
using Reply = common::ApiReply;
using Call = common::ApiCall;

int statusFor(const std::string& code) {
  if (code == ports::errors::kInvalid) return 400;
  if (code == ports::errors::kNotFound) return 404;
  if (code == ports::errors::kConflict || code == ports::errors::kNoDriver) return 409;
  return 500;
}

Reply failure(const common::Error& error) {
  return errorReply(statusFor(error.code), error.code, error.message);
}

template <typename T, typename ToJson>
Reply reply(const common::Result<T>& result, ToJson to_json, int status = 200) {
  if (!result.ok()) return failure(result.error());
  return Reply{status, to_json(result.value()), {}};
}

// Ids in paths are positive decimal integers; anything else names no resource (404).
std::optional<int64_t> pathId(const Call& call, const std::string& name) {
  const auto& text = call.params.at(name);
  if (text.empty() || text.size() > 18 || text.find_first_not_of("0123456789") != std::string::npos)
    return std::nullopt;
  const int64_t id = std::stoll(text);
  if (id <= 0) return std::nullopt;
  return id;
}

Reply unknownId(const std::string& what, const Call& call) {
  return errorReply(404, ports::errors::kNotFound,
                    what + " " + call.params.at("id") + " not found");
}

std::optional<double> queryNumber(const Call& call, const std::string& key,
                                  std::vector<domain::Violation>& violations,
                                  std::optional<double> fallback = std::nullopt) {
  const auto it = call.query.find(key);
  if (it == call.query.end() || it->second.empty()) {
    if (!fallback) violations.push_back({key, "is required"});
    return fallback;
  }
  char* end = nullptr;
  const double value = std::strtod(it->second.c_str(), &end);
  if (end == it->second.c_str() || *end != '\0' || !std::isfinite(value)) {
    violations.push_back({key, "must be a number"});
    return std::nullopt;
  }
  return value;
}

ports::Page pageOf(const Call& call, std::vector<domain::Violation>& violations) {
  ports::Page page;
  if (auto limit = queryNumber(call, "limit", violations, 50.0)) page.limit = std::llround(*limit);
  if (auto offset = queryNumber(call, "offset", violations, 0.0))
    page.offset = std::llround(*offset);
  return page;
}

template <typename T>
json listingJson(const ports::Listing<T>& listing) {
  json data = json::array();
  for (const auto& item : listing.items)
    data.push_back(toJson(item));
  return json{{"data", std::move(data)},
              {"total", listing.total},
              {"limit", listing.page.limit},
              {"offset", listing.page.offset}};
}

Reply created(Reply r, const std::string& location) {
  if (r.status == 200) {
    r.status = 201;
    r.headers["Location"] = location;
  }
  return r;
}

// ---- the legacy API ------------------------------------------------------------------------

Reply postPassenger(ports::RideShareService& service, const Call& call) {
  auto body = common::parseJsonObject(call.body);
  if (!body.ok()) return failure(body.error());
  std::vector<domain::Violation> violations;
  FieldReader fields(*body, violations);
  ports::NewPassenger request{fields.requiredString("name"), fields.requiredString("phone"),
                              fields.optionalString("email")};
  if (!violations.empty()) return errorReply(400, ports::errors::kInvalid, describe(violations));
  auto r = reply(service.registerPassenger(request), [](const auto& p) { return toJson(p); });
  return created(r, "/api/passengers/" + (r.status == 200 ? r.body["id"].dump() : ""));
}

Reply getPassenger(ports::RideShareService& service, const Call& call) {
  const auto id = pathId(call, "id");
  if (!id) return unknownId("passenger", call);
  return reply(service.passenger(*id), [](const auto& p) { return toJson(p); });
}

Reply listPassengers(ports::RideShareService& service, const Call& call) {
  std::vector<domain::Violation> violations;
  const auto page = pageOf(call, violations);
  if (!violations.empty()) return errorReply(400, ports::errors::kInvalid, describe(violations));
  return reply(service.passengers(page), [](const auto& l) { return listingJson(l); });
}

Reply postDriver(ports::RideShareService& service, const Call& call) {
  auto body = common::parseJsonObject(call.body);
  if (!body.ok()) return failure(body.error());
  std::vector<domain::Violation> violations;
  FieldReader fields(*body, violations);
  ports::NewDriver request;
  request.name = fields.requiredString("name");
  request.phone = fields.requiredString("phone");
  if (const json* car = fields.object("car", true)) {
    FieldReader car_fields(*car, violations, "car.");
    request.vehicle.plate = car_fields.requiredString("plate");
    request.vehicle.model = car_fields.requiredString("model");
  }
  if (auto status = fields.optionalString("status")) {
    auto parsed = domain::driverStatusFromString(*status);
    if (!parsed || *parsed == domain::DriverStatus::kOnTrip) {
      violations.push_back({"status", "must be \"offline\" or \"available\""});
    } else {
      request.status = *parsed;
    }
  }
  request.location = fields.point("location", false);
  if (!violations.empty()) return errorReply(400, ports::errors::kInvalid, describe(violations));
  auto r = reply(service.registerDriver(request), [](const auto& d) { return toJson(d); });
  return created(r, "/api/drivers/" + (r.status == 200 ? r.body["id"].dump() : ""));
}

Reply getDriver(ports::RideShareService& service, const Call& call) {
  const auto id = pathId(call, "id");
  if (!id) return unknownId("driver", call);
  return reply(service.driver(*id), [](const auto& d) { return toJson(d); });
}

Reply listDrivers(ports::RideShareService& service, const Call& call) {
  std::vector<domain::Violation> violations;
  const auto page = pageOf(call, violations);
  if (!violations.empty()) return errorReply(400, ports::errors::kInvalid, describe(violations));
  return reply(service.drivers(page), [](const auto& l) { return listingJson(l); });
}

Reply putDriverLocation(ports::RideShareService& service, const Call& call) {
  const auto id = pathId(call, "id");
  if (!id) return unknownId("driver", call);
  auto body = common::parseJsonObject(call.body);
  if (!body.ok()) return failure(body.error());
  std::vector<domain::Violation> violations;
  FieldReader fields(*body, violations);
  const auto lat = fields.requiredNumber("lat");
  const auto lng = fields.requiredNumber("lng");
  if (lat && lng) {
    if (auto why = domain::checkDegrees(*lat, *lng)) violations.push_back({"location", *why});
  }
  if (!violations.empty()) return errorReply(400, ports::errors::kInvalid, describe(violations));
  return reply(service.moveDriver(*id, domain::GeoPoint::fromDegrees(*lat, *lng)),
               [](const auto& d) { return toJson(d); });
}

Reply putDriverStatus(ports::RideShareService& service, const Call& call) {
  const auto id = pathId(call, "id");
  if (!id) return unknownId("driver", call);
  auto body = common::parseJsonObject(call.body);
  if (!body.ok()) return failure(body.error());
  std::vector<domain::Violation> violations;
  FieldReader fields(*body, violations);
  const auto text = fields.requiredString("status");
  if (!violations.empty()) return errorReply(400, ports::errors::kInvalid, describe(violations));
  const auto status = domain::driverStatusFromString(text);
  if (!status) {
    return errorReply(400, ports::errors::kInvalid, "status: must be \"offline\" or \"available\"");
  }
  return reply(service.setDriverStatus(*id, *status), [](const auto& d) { return toJson(d); });
}

Reply nearbyDrivers(ports::RideShareService& service, const Call& call) {
  std::vector<domain::Violation> violations;
  const auto lat = queryNumber(call, "lat", violations);
  const auto lng = queryNumber(call, "lng", violations);
  const auto radius_km = queryNumber(call, "radius_km", violations, 5.0);
  const auto limit = queryNumber(call, "limit", violations, 20.0);
  if (lat && lng) {
    if (auto why = domain::checkDegrees(*lat, *lng)) violations.push_back({"lat/lng", *why});
  }
  if (!violations.empty()) return errorReply(400, ports::errors::kInvalid, describe(violations));
  auto result = service.nearbyDrivers(domain::GeoPoint::fromDegrees(*lat, *lng),
                                      *radius_km * 1000.0, std::llround(*limit));
  return reply(result, [](const std::vector<ports::NearbyDriver>& drivers) {
    json data = json::array();
    for (const auto& nearby : drivers) {
      json item = toJson(ports::DriverView{nearby.driver, 0});
      item.erase("completed_trips");  // not computed for listings by distance
      item["distance_m"] = nearby.distance_m;
      data.push_back(std::move(item));
    }
    return json{{"data", std::move(data)}};
  });
}

Reply postTrip(ports::RideShareService& service, const Call& call) {
  auto body = common::parseJsonObject(call.body);
  if (!body.ok()) return failure(body.error());
  std::vector<domain::Violation> violations;
  FieldReader fields(*body, violations);
  const auto passenger_id = fields.requiredId("passenger_id");
  const auto pickup = fields.point("pickup", true);
  const auto dropoff = fields.point("dropoff", true);
  if (!violations.empty()) return errorReply(400, ports::errors::kInvalid, describe(violations));
  auto r = reply(service.requestTrip({*passenger_id, *pickup, *dropoff}),
                 [](const auto& t) { return toJson(t); });
  return created(r, "/api/trips/" + (r.status == 200 ? r.body["id"].dump() : ""));
}

Reply getTrip(ports::RideShareService& service, const Call& call) {
  const auto id = pathId(call, "id");
  if (!id) return unknownId("trip", call);
  return reply(service.trip(*id), [](const auto& t) { return toJson(t); });
}

Reply completeTrip(ports::RideShareService& service, const Call& call) {
  const auto id = pathId(call, "id");
  if (!id) return unknownId("trip", call);
  return reply(service.completeTrip(*id), [](const auto& t) { return toJson(t); });
}

Reply getInvoice(ports::RideShareService& service, const Call& call) {
  const auto id = pathId(call, "id");
  if (!id) return unknownId("invoice", call);
  return reply(service.invoice(*id), [](const auto& i) { return toJson(i); });
}

Reply health(ports::RideShareService& service, const Call&) {
  if (!service.healthy()) return errorReply(503, "unavailable", "database is not answering");
  return Reply{200, json{{"status", "ok"}}, {}};
}

}  // namespace

Poco::Net::HTTPRequestHandlerFactory::Ptr makeApiHandlerFactory(ports::RideShareService& service,
                                                                const ApiOptions& options) {
  const auto bind = [&service](Reply (*handler)(ports::RideShareService&, const Call&)) {
    return [&service, handler](const Call& call) { return handler(service, call); };
  };
  std::vector<common::ApiRoute> routes{
      {"GET", "/healthz", bind(health)},
      {"POST", "/api/passengers", bind(postPassenger)},
      {"GET", "/api/passengers", bind(listPassengers)},
      {"GET", "/api/passengers/{id}", bind(getPassenger)},
      {"POST", "/api/drivers", bind(postDriver)},
      {"GET", "/api/drivers", bind(listDrivers)},
      {"GET", "/api/drivers/nearby", bind(nearbyDrivers)},
      {"GET", "/api/drivers/{id}", bind(getDriver)},
      {"PUT", "/api/drivers/{id}/location", bind(putDriverLocation)},
      {"PUT", "/api/drivers/{id}/status", bind(putDriverStatus)},
      {"POST", "/api/trips", bind(postTrip)},
      {"GET", "/api/trips/{id}", bind(getTrip)},
      {"POST", "/api/trips/{id}/complete", bind(completeTrip)},
      {"GET", "/api/invoices/{id}", bind(getInvoice)},
  };
  common::JsonApiOptions api_options;
  api_options.max_body_bytes = options.max_body_bytes;
  api_options.access_log = options.access_log;
  api_options.map_exception = [](const std::exception& e) -> std::optional<Reply> {
    if (dynamic_cast<const ports::StorageError*>(&e) != nullptr)
      return errorReply(503, "storage_unavailable", e.what());
    return std::nullopt;
  };
  return new common::JsonApiHandlerFactory(std::move(routes), std::move(api_options));
}

}  // namespace strangler::monolith::http
