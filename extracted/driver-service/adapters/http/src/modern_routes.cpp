#include <cmath>
#include <cstdlib>

#include "driver_service/http/routes.h"

namespace strangler::driver_service::http {
namespace {

using common::ApiCall;
using common::ApiReply;
using common::errorReply;
using nlohmann::json;

ApiReply failure(const common::Error& error) {
  const int status = error.code == ports::errors::kInvalid    ? 400
                     : error.code == ports::errors::kNotFound ? 404
                     : error.code == ports::errors::kConflict ? 409
                                                              : 500;
  return errorReply(status, error.code, error.message);
}

json toJson(const domain::Driver& d) {
  return json{
      {"id", d.id},
      {"name", d.name},
      {"phone", d.phone},
      {"vehicle", {{"plate", d.vehicle.plate}, {"model", d.vehicle.model}}},
      {"status", domain::toString(d.status)},
      {"location",
       d.location ? json{{"lat", d.location->lat}, {"lng", d.location->lng}} : json(nullptr)},
      {"locationUpdatedAt", d.location_updated_at ? json(*d.location_updated_at) : json(nullptr)},
      {"createdAt", d.created_at},
      {"updatedAt", d.updated_at}};
}

template <typename T>
ApiReply answer(const common::Result<T>& result, int status = 200) {
  if (!result.ok()) return failure(result.error());
  return ApiReply{status, toJson(result.value()), {}};
}

std::optional<int64_t> pathId(const ApiCall& call) {
  const auto& text = call.params.at("id");
  if (text.empty() || text.size() > 18 || text.find_first_not_of("0123456789") != std::string::npos)
    return std::nullopt;
  return std::stoll(text);
}

std::optional<double> number(const json& object, const char* key) {
  const auto it = object.find(key);
  if (it == object.end() || !it->is_number()) return std::nullopt;
  return it->get<double>();
}

std::optional<double> queryNumber(const ApiCall& call, const std::string& key) {
  const auto it = call.query.find(key);
  if (it == call.query.end()) return std::nullopt;
  char* end = nullptr;
  const double value = std::strtod(it->second.c_str(), &end);
  if (end == it->second.c_str() || *end != '\0' || !std::isfinite(value)) return std::nullopt;
  return value;
}

ApiReply notFound(const ApiCall& call) {
  return errorReply(404, ports::errors::kNotFound, "driver " + call.params.at("id") + " not found");
}

ApiReply create(ports::DriverService& service, const ApiCall& call) {
  auto body = common::parseJsonObject(call.body);
  if (!body.ok()) return failure(body.error());
  ports::Registration r;
  const auto text = [&](const json& object, const char* key) {
    const auto it = object.find(key);
    return it != object.end() && it->is_string() ? it->get<std::string>() : std::string();
  };
  r.name = text(*body, "name");
  r.phone = text(*body, "phone");
  const json vehicle = body->value("vehicle", json::object());
  if (vehicle.is_object()) r.vehicle = {text(vehicle, "plate"), text(vehicle, "model")};
  if (body->contains("status")) {
    auto status = domain::driverStatusFromString(text(*body, "status"));
    if (!status)
      return errorReply(400, ports::errors::kInvalid, "status: must be OFFLINE or AVAILABLE");
    r.status = *status;
  }
  if (const auto it = body->find("location"); it != body->end() && it->is_object()) {
    const auto lat = number(*it, "lat");
    const auto lng = number(*it, "lng");
    if (!lat || !lng)
      return errorReply(400, ports::errors::kInvalid, "location: needs lat and lng");
    r.location = domain::Location{*lat, *lng};
  }
  auto created = service.registerDriver(r);
  ApiReply reply = answer(created, 201);
  if (created.ok()) reply.headers["Location"] = "/v2/drivers/" + std::to_string(created->id);
  return reply;
}

ApiReply list(ports::DriverService& service, const ApiCall& call) {
  auto page = service.drivers(std::llround(queryNumber(call, "limit").value_or(50)),
                              std::llround(queryNumber(call, "offset").value_or(0)));
  if (!page.ok()) return failure(page.error());
  json items = json::array();
  for (const auto& d : page->first)
    items.push_back(toJson(d));
  return ApiReply{200, json{{"items", std::move(items)}, {"total", page->second}}, {}};
}

ApiReply get(ports::DriverService& service, const ApiCall& call) {
  const auto id = pathId(call);
  if (!id) return notFound(call);
  auto driver = service.driver(*id);
  if (!driver.ok()) return failure(driver.error());
  ApiReply reply{200, toJson(*driver), {}};
  const auto trips = service.completedTrips(*id);
  reply.body["completedTrips"] = trips ? json(*trips) : json(nullptr);
  return reply;
}

ApiReply move(ports::DriverService& service, const ApiCall& call) {
  const auto id = pathId(call);
  if (!id) return notFound(call);
  auto body = common::parseJsonObject(call.body);
  if (!body.ok()) return failure(body.error());
  const auto lat = number(*body, "lat");
  const auto lng = number(*body, "lng");
  if (!lat || !lng)
    return errorReply(400, ports::errors::kInvalid, "lat and lng are required numbers");
  return answer(service.moveDriver(*id, {*lat, *lng}));
}

ApiReply setStatus(ports::DriverService& service, const ApiCall& call) {
  const auto id = pathId(call);
  if (!id) return notFound(call);
  auto body = common::parseJsonObject(call.body);
  if (!body.ok()) return failure(body.error());
  const auto it = body->find("status");
  auto status = it != body->end() && it->is_string()
                    ? domain::driverStatusFromString(it->get<std::string>())
                    : std::nullopt;
  if (!status)
    return errorReply(400, ports::errors::kInvalid, "status: must be OFFLINE or AVAILABLE");
  return answer(service.setStatus(*id, *status));
}

ApiReply nearby(ports::DriverService& service, const ApiCall& call) {
  const auto lat = queryNumber(call, "lat");
  const auto lng = queryNumber(call, "lng");
  if (!lat || !lng)
    return errorReply(400, ports::errors::kInvalid, "lat and lng are required numbers");
  auto found = service.nearby({*lat, *lng}, queryNumber(call, "radiusM").value_or(5000),
                              std::llround(queryNumber(call, "limit").value_or(20)));
  if (!found.ok()) return failure(found.error());
  json items = json::array();
  for (const auto& item : *found)
    items.push_back(json{{"driver", toJson(item.driver)}, {"distanceM", item.distance_m}});
  return ApiReply{200, json{{"items", std::move(items)}}, {}};
}

}  // namespace

std::vector<common::ApiRoute> modernRoutes(ports::DriverService& service) {
  const auto bind = [&service](ApiReply (*handler)(ports::DriverService&, const ApiCall&)) {
    return [&service, handler](const ApiCall& call) { return handler(service, call); };
  };
  return {
      {"POST", "/v2/drivers", bind(create)},
      {"GET", "/v2/drivers", bind(list)},
      {"GET", "/v2/drivers/nearby", bind(nearby)},
      {"GET", "/v2/drivers/{id}", bind(get)},
      {"PUT", "/v2/drivers/{id}/location", bind(move)},
      {"PUT", "/v2/drivers/{id}/status", bind(setStatus)},
  };
}

}  // namespace strangler::driver_service::http
