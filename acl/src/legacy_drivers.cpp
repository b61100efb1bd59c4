#include "strangler/acl/legacy_drivers.h"

#include <cmath>
#include <vector>

namespace strangler::acl::legacy_drivers {
namespace {

using ds::domain::DriverStatus;
using nlohmann::json;

struct Violation {
  std::string field;
  std::string message;
};

std::string describe(const std::vector<Violation>& violations) {
  std::string message;
  for (const auto& v : violations)
    message += (message.empty() ? "" : "; ") + v.field + ": " + v.message;
  return message;
}

common::Error invalid(const std::vector<Violation>& violations) {
  return common::Error{ds::ports::errors::kInvalid, describe(violations)};
}

// Legacy field reading: same checks, same order, same words as the monolith's API.
class LegacyFields {
 public:
  LegacyFields(const json& object, std::vector<Violation>& out, std::string prefix = "")
      : object_(object), out_(out), prefix_(std::move(prefix)) {}

  std::string requiredString(const char* key) {
    const auto it = object_.find(key);
    if (it == object_.end() || it->is_null()) return fail(key, "is required"), std::string();
    if (!it->is_string()) return fail(key, "must be a string"), std::string();
    return it->get<std::string>();
  }
  std::optional<std::string> optionalString(const char* key) {
    const auto it = object_.find(key);
    if (it == object_.end() || it->is_null()) return std::nullopt;
    if (!it->is_string()) return fail(key, "must be a string"), std::nullopt;
    return it->get<std::string>();
  }
  std::optional<double> requiredNumber(const char* key) {
    const auto it = object_.find(key);
    if (it == object_.end() || it->is_null()) return fail(key, "is required"), std::nullopt;
    if (!it->is_number()) return fail(key, "must be a number"), std::nullopt;
    return it->get<double>();
  }
  const json* object(const char* key, bool required) {
    const auto it = object_.find(key);
    if (it == object_.end() || it->is_null()) {
      if (required) fail(key, "is required");
      return nullptr;
    }
    if (!it->is_object()) return fail(key, "must be an object"), nullptr;
    return &*it;
  }
  std::optional<ds::domain::Location> point(const char* key, bool required) {
    const json* nested = object(key, required);
    if (nested == nullptr) return std::nullopt;
    LegacyFields inner(*nested, out_, prefix_ + key + ".");
    const auto lat = inner.requiredNumber("lat");
    const auto lng = inner.requiredNumber("lng");
    if (!lat || !lng) return std::nullopt;
    if (auto why = ds::domain::checkLocation({*lat, *lng})) return fail(key, *why), std::nullopt;
    return ds::domain::Location{legacyDegrees(*lat), legacyDegrees(*lng)};
  }
  void fail(const char* key, const std::string& message) {
    out_.push_back({prefix_ + key, message});
  }

 private:
  const json& object_;
  std::vector<Violation>& out_;
  std::string prefix_;
};

json legacyLocation(const ds::domain::Location& l) {
  return json{{"lat", legacyDegrees(l.lat)}, {"lng", legacyDegrees(l.lng)}};
}

}  // namespace

std::string legacyStatus(DriverStatus status) {
  switch (status) {
    case DriverStatus::kOffline:
      return "offline";
    case DriverStatus::kAvailable:
      return "available";
    case DriverStatus::kOnTrip:
      return "on_trip";
  }
  return "offline";
}

std::optional<DriverStatus> statusFromLegacy(const std::string& name) {
  for (auto status : {DriverStatus::kOffline, DriverStatus::kAvailable, DriverStatus::kOnTrip}) {
    if (legacyStatus(status) == name) return status;
  }
  return std::nullopt;
}

double legacyDegrees(double degrees) {
  return static_cast<double>(std::llround(degrees * 1e6)) / 1e6;
}

json toLegacy(const ds::domain::Driver& d, int64_t completed_trips) {
  return json{
      {"id", d.id},
      {"name", d.name},
      {"phone", d.phone},
      {"car", {{"plate", d.vehicle.plate}, {"model", d.vehicle.model}}},
      {"status", legacyStatus(d.status)},
      {"location", d.location ? legacyLocation(*d.location) : json(nullptr)},
      {"location_updated_at", d.location_updated_at ? json(*d.location_updated_at) : json(nullptr)},
      {"completed_trips", completed_trips},
      {"created_at", d.created_at}};
}

json toLegacyNearby(const ds::domain::Driver& driver, double distance_m) {
  json item = toLegacy(driver, 0);
  item.erase("completed_trips");
  item["distance_m"] = static_cast<int64_t>(std::llround(distance_m));
  return item;
}

common::Result<ds::ports::Registration> registrationFromLegacy(const json& body) {
  std::vector<Violation> violations;
  LegacyFields fields(body, violations);
  ds::ports::Registration r;
  r.name = fields.requiredString("name");
  r.phone = fields.requiredString("phone");
  if (const json* car = fields.object("car", true)) {
    LegacyFields car_fields(*car, violations, "car.");
    r.vehicle.plate = car_fields.requiredString("plate");
    r.vehicle.model = car_fields.requiredString("model");
  }
  if (auto status = fields.optionalString("status")) {
    auto parsed = statusFromLegacy(*status);
    if (!parsed || *parsed == DriverStatus::kOnTrip) {
      violations.push_back({"status", "must be \"offline\" or \"available\""});
    } else {
      r.status = *parsed;
    }
  }
  r.location = fields.point("location", false);
  if (!violations.empty()) return invalid(violations);
  // The legacy app checks the values after the types, in its own words.
  for (const auto& v : ds::domain::checkDriver(r.name, r.phone, r.vehicle)) {
    violations.push_back({v.field == "vehicle.plate"   ? "car.plate"
                          : v.field == "vehicle.model" ? "car.model"
                                                       : v.field,
                          v.message});
  }
  if (!violations.empty()) return invalid(violations);
  return r;
}

common::Result<ds::domain::Location> locationFromLegacy(const json& body) {
  std::vector<Violation> violations;
  LegacyFields fields(body, violations);
  const auto lat = fields.requiredNumber("lat");
  const auto lng = fields.requiredNumber("lng");
  if (lat && lng) {
    if (auto why = ds::domain::checkLocation({*lat, *lng}))
      violations.push_back({"location", *why});
  }
  if (!violations.empty()) return invalid(violations);
  return ds::domain::Location{legacyDegrees(*lat), legacyDegrees(*lng)};
}

common::Result<DriverStatus> statusChangeFromLegacy(const json& body) {
  std::vector<Violation> violations;
  LegacyFields fields(body, violations);
  const auto text = fields.requiredString("status");
  if (!violations.empty()) return invalid(violations);
  const auto status = statusFromLegacy(text);
  if (!status) {
    return common::Error{ds::ports::errors::kInvalid,
                         "status: must be \"offline\" or \"available\""};
  }
  return *status;
}

common::Error toLegacyError(const common::Error& error) {
  common::Error legacy = error;
  for (const auto& [from, to] :
       {std::pair{"vehicle.plate", "car.plate"}, std::pair{"vehicle.model", "car.model"}}) {
    for (auto at = legacy.message.find(from); at != std::string::npos;
         at = legacy.message.find(from, at))
      legacy.message.replace(at, std::string(from).size(), to);
  }
  return legacy;
}

}  // namespace strangler::acl::legacy_drivers
