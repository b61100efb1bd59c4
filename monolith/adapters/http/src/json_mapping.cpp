#include "json_mapping.h"

#include <cmath>

namespace strangler::monolith::http {

using nlohmann::json;

json toJson(const domain::GeoPoint& point) {
  return json{{"lat", point.latDegrees()}, {"lng", point.lngDegrees()}};
}

json toJson(const domain::Passenger& passenger) {
  return json{{"id", passenger.id},
              {"name", passenger.name},
              {"phone", passenger.phone},
              {"email", passenger.email ? json(*passenger.email) : json(nullptr)},
              {"created_at", passenger.created_at}};
}

json toJson(const ports::DriverView& view) {
  const auto& d = view.driver;
  return json{
      {"id", d.id},
      {"name", d.name},
      {"phone", d.phone},
      {"car", {{"plate", d.vehicle.plate}, {"model", d.vehicle.model}}},
      {"status", domain::toString(d.status)},
      {"location", d.location ? toJson(*d.location) : json(nullptr)},
      {"location_updated_at", d.location_updated_at ? json(*d.location_updated_at) : json(nullptr)},
      {"completed_trips", view.completed_trips},
      {"created_at", d.created_at}};
}

json toJson(const ports::TripView& view) {
  const auto& t = view.trip;
  return json{{"id", t.id},
              {"passenger_id", t.passenger_id},
              {"driver_id", t.driver_id},
              {"status", domain::toString(t.status)},
              {"pickup", toJson(t.pickup)},
              {"dropoff", toJson(t.dropoff)},
              {"distance_m", t.distance_m},
              {"fare_cents", t.fare_cents},
              {"requested_at", t.requested_at},
              {"completed_at", t.completed_at ? json(*t.completed_at) : json(nullptr)},
              {"invoice_id", view.invoice_id ? json(*view.invoice_id) : json(nullptr)}};
}

json toJson(const domain::Invoice& invoice) {
  return json{{"id", invoice.id},
              {"trip_id", invoice.trip_id},
              {"passenger_id", invoice.passenger_id},
              {"amount_cents", invoice.amount_cents},
              {"currency", invoice.currency},
              {"status", domain::toString(invoice.status)},
              {"issued_at", invoice.issued_at}};
}

std::string FieldReader::requiredString(const char* key) {
  const auto it = object_.find(key);
  if (it == object_.end() || it->is_null()) {
    violate(key, "is required");
    return {};
  }
  if (!it->is_string()) {
    violate(key, "must be a string");
    return {};
  }
  return it->get<std::string>();
}

std::optional<std::string> FieldReader::optionalString(const char* key) {
  const auto it = object_.find(key);
  if (it == object_.end() || it->is_null()) return std::nullopt;
  if (!it->is_string()) {
    violate(key, "must be a string");
    return std::nullopt;
  }
  return it->get<std::string>();
}

std::optional<int64_t> FieldReader::requiredId(const char* key) {
  const auto it = object_.find(key);
  if (it == object_.end() || it->is_null()) {
    violate(key, "is required");
    return std::nullopt;
  }
  if (!it->is_number_integer() || it->get<int64_t>() <= 0) {
    violate(key, "must be a positive integer");
    return std::nullopt;
  }
  return it->get<int64_t>();
}

std::optional<double> FieldReader::requiredNumber(const char* key) {
  const auto it = object_.find(key);
  if (it == object_.end() || it->is_null()) {
    violate(key, "is required");
    return std::nullopt;
  }
  if (!it->is_number()) {
    violate(key, "must be a number");
    return std::nullopt;
  }
  return it->get<double>();
}

const json* FieldReader::object(const char* key, bool required) {
  const auto it = object_.find(key);
  if (it == object_.end() || it->is_null()) {
    if (required) violate(key, "is required");
    return nullptr;
  }
  if (!it->is_object()) {
    violate(key, "must be an object");
    return nullptr;
  }
  return &*it;
}

std::optional<domain::GeoPoint> FieldReader::point(const char* key, bool required) {
  const json* nested = object(key, required);
  if (nested == nullptr) return std::nullopt;
  FieldReader inner(*nested, violations_, path(key) + ".");
  const auto lat = inner.requiredNumber("lat");
  const auto lng = inner.requiredNumber("lng");
  if (!lat || !lng) return std::nullopt;
  if (auto why = domain::checkDegrees(*lat, *lng)) {
    violate(key, *why);
    return std::nullopt;
  }
  return domain::GeoPoint::fromDegrees(*lat, *lng);
}

std::string describe(const std::vector<domain::Violation>& violations) {
  std::string message;
  for (const auto& v : violations) {
    if (!message.empty()) message += "; ";
    message += v.field + ": " + v.message;
  }
  return message;
}

}  // namespace strangler::monolith::http
