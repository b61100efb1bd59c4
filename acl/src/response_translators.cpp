#include "strangler/acl/response_translators.h"

#include "strangler/acl/legacy_drivers.h"

namespace strangler::acl {
namespace {

using nlohmann::json;
namespace ds = strangler::driver_service;
using R = common::Result<json>;

R fail(const std::string& message) {
  return R::failure("untranslatable", message);
}

// A /v2 driver object → the service's model; nullopt names the first field that is missing or
// of the wrong type.
common::Result<ds::domain::Driver> driverFromV2(const json& v2, const std::string& at) {
  using D = common::Result<ds::domain::Driver>;
  const auto field = [&](const char* key) -> const json* {
    const auto it = v2.find(key);
    return it == v2.end() ? nullptr : &*it;
  };
  const auto bad = [&](const std::string& key, const char* what) {
    return D::failure("untranslatable", at + "/" + key + ": " + what);
  };
  ds::domain::Driver d;
  const json* id = field("id");
  if (id == nullptr || !id->is_number_integer()) return bad("id", "expected an integer");
  d.id = id->get<int64_t>();
  for (const auto& [key, out] : {std::pair<const char*, std::string*>{"name", &d.name},
                                 std::pair<const char*, std::string*>{"phone", &d.phone}}) {
    const json* value = field(key);
    if (value == nullptr || !value->is_string()) return bad(key, "expected a string");
    *out = value->get<std::string>();
  }
  const json* vehicle = field("vehicle");
  if (vehicle == nullptr || !vehicle->is_object()) return bad("vehicle", "expected an object");
  d.vehicle.plate = vehicle->value("plate", "");
  d.vehicle.model = vehicle->value("model", "");
  const json* status = field("status");
  const auto parsed = status != nullptr && status->is_string()
                          ? ds::domain::driverStatusFromString(status->get<std::string>())
                          : std::nullopt;
  if (!parsed) return bad("status", "expected OFFLINE, AVAILABLE or ON_TRIP");
  d.status = *parsed;
  if (const json* location = field("location"); location != nullptr && !location->is_null()) {
    if (!location->is_object() || !location->contains("lat") || !location->contains("lng") ||
        !(*location)["lat"].is_number() || !(*location)["lng"].is_number())
      return bad("location", "expected {lat, lng}");
    d.location =
        ds::domain::Location{(*location)["lat"].get<double>(), (*location)["lng"].get<double>()};
  }
  if (const json* t = field("locationUpdatedAt"); t != nullptr && t->is_number_integer())
    d.location_updated_at = t->get<int64_t>();
  if (const json* t = field("createdAt"); t != nullptr && t->is_number_integer())
    d.created_at = t->get<int64_t>();
  return d;
}

R driverToLegacy(const json& v2, const std::string& at) {
  auto driver = driverFromV2(v2, at);
  if (!driver) return R(driver.error());
  json legacy = legacy_drivers::toLegacy(*driver, 0);
  // GET /v2/drivers/{id} carries the monolith's figure as completedTrips (null when unknown).
  const auto trips = v2.find("completedTrips");
  if (trips != v2.end() && trips->is_number_integer()) {
    legacy["completed_trips"] = *trips;
  } else {
    legacy.erase("completed_trips");
  }
  return legacy;
}

// One element of a /v2 list: a driver, or a nearby hit {"driver": ..., "distanceM": ...}.
R itemToLegacy(const json& item, const std::string& at) {
  if (item.is_object() && item.contains("driver")) {
    auto driver = driverFromV2(item["driver"], at + "/driver");
    if (!driver) return R(driver.error());
    const auto distance = item.find("distanceM");
    if (distance == item.end() || !distance->is_number())
      return fail(at + "/distanceM: expected a number");
    return legacy_drivers::toLegacyNearby(*driver, distance->get<double>());
  }
  if (!item.is_object()) return fail(at + ": expected a driver object");
  return driverToLegacy(item, at);
}

}  // namespace

R driversToLegacy(int status, const json& body) {
  if (status >= 400) {
    // Errors share one shape on both sides ({"error": code, "message": text}); only the
    // service's field names in the message differ.
    if (!body.is_object() || !body.contains("message") || !body["message"].is_string()) return body;
    json legacy = body;
    common::Error error{body.value("error", ""), body["message"].get<std::string>()};
    legacy["message"] = legacy_drivers::toLegacyError(error).message;
    return legacy;
  }
  if (!body.is_object()) {
    return fail("expected a driver or a list of drivers, got " + std::string(body.type_name()));
  }
  if (!body.contains("items")) return driverToLegacy(body, "");
  // A /v2 list ({"items": [...]}) → the legacy list ({"data": [...]}).
  if (!body["items"].is_array()) return fail("/items: expected an array");
  json data = json::array();
  for (size_t i = 0; i < body["items"].size(); ++i) {
    auto item = itemToLegacy(body["items"][i], "/items/" + std::to_string(i));
    if (!item) return item;
    data.push_back(std::move(item).value());
  }
  return json{{"data", std::move(data)}};
}

std::optional<ResponseTranslator> responseTranslator(const std::string& name) {
  if (name == "drivers") return ResponseTranslator(&driversToLegacy);
  return std::nullopt;
}

std::vector<std::string> responseTranslatorNames() {
  return {"drivers"};
}

}  // namespace strangler::acl
