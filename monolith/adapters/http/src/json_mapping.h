#pragma once

#include <nlohmann/json.hpp>

#include <optional>
#include <string>
#include <vector>

#include "monolith/domain/rules.h"
#include "monolith/ports/rideshare_service.h"

namespace strangler::monolith::http {

// Legacy API shapes. Keep them stable: clients and the anti-corruption layer's contract tests
// depend on every key and type here.
nlohmann::json toJson(const domain::GeoPoint& point);
nlohmann::json toJson(const domain::Passenger& passenger);
nlohmann::json toJson(const ports::DriverView& view);
nlohmann::json toJson(const ports::TripView& view);
nlohmann::json toJson(const domain::Invoice& invoice);

/// Reads typed fields out of a request body, collecting one violation per bad field.
class FieldReader {
 public:
  FieldReader(const nlohmann::json& object, std::vector<domain::Violation>& violations,
              std::string prefix = "")
      : object_(object), violations_(violations), prefix_(std::move(prefix)) {}

  std::string requiredString(const char* key);
  std::optional<std::string> optionalString(const char* key);
  std::optional<int64_t> requiredId(const char* key);
  /// A {"lat": .., "lng": ..} object in degrees.
  std::optional<domain::GeoPoint> point(const char* key, bool required);
  /// A nested object, or nullptr (with a violation when required).
  const nlohmann::json* object(const char* key, bool required);
  std::optional<double> requiredNumber(const char* key);

 private:
  std::string path(const char* key) const { return prefix_ + key; }
  void violate(const char* key, const std::string& message) {
    violations_.push_back({path(key), message});
  }

  const nlohmann::json& object_;
  std::vector<domain::Violation>& violations_;
  std::string prefix_;
};

/// "field: message; field: message".
std::string describe(const std::vector<domain::Violation>& violations);

}  // namespace strangler::monolith::http
