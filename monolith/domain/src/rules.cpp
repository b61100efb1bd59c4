#include "monolith/domain/rules.h"

#include <algorithm>
#include <cmath>

namespace strangler::monolith::domain {

std::vector<Violation> checkContact(const std::string& name, const std::string& phone,
                                    const std::optional<std::string>& email) {
  std::vector<Violation> violations;
  if (name.empty() || name.size() > 100) {
    violations.push_back({"name", "must be 1..100 bytes"});
  }
  const bool phone_chars_ok = std::all_of(phone.begin(), phone.end(), [](char c) {
    return (c >= '0' && c <= '9') || c == '+' || c == '-' || c == ' ';
  });
  const auto digits =
      std::count_if(phone.begin(), phone.end(), [](char c) { return c >= '0' && c <= '9'; });
  if (!phone_chars_ok || digits < 6 || phone.size() > 32) {
    violations.push_back({"phone", "must be 6..32 characters of digits, '+', '-' or spaces"});
  }
  if (email && (email->size() > 200 || email->find('@') == std::string::npos ||
                email->front() == '@' || email->back() == '@')) {
    violations.push_back({"email", "must look like name@domain"});
  }
  return violations;
}

std::vector<Violation> checkVehicle(const Vehicle& vehicle) {
  std::vector<Violation> violations;
  if (vehicle.plate.empty() || vehicle.plate.size() > 20) {
    violations.push_back({"car.plate", "must be 1..20 bytes"});
  }
  if (vehicle.model.empty() || vehicle.model.size() > 60) {
    violations.push_back({"car.model", "must be 1..60 bytes"});
  }
  return violations;
}

int64_t FareSchedule::fareCents(int64_t distance_m) const {
  const auto metered = static_cast<int64_t>(
      std::llround(static_cast<double>(distance_m) * static_cast<double>(per_km_cents) / 1000.0));
  return std::max(minimum_cents, base_cents + metered);
}

std::vector<Candidate> rankCandidates(const std::vector<Driver>& drivers, const GeoPoint& pickup,
                                      double radius_m) {
  std::vector<Candidate> candidates;
  for (const auto& driver : drivers) {
    if (driver.status != DriverStatus::kAvailable || !driver.location) continue;
    const double distance = distanceMeters(*driver.location, pickup);
    if (distance <= radius_m) candidates.push_back({driver.id, distance});
  }
  std::sort(candidates.begin(), candidates.end(), [](const Candidate& a, const Candidate& b) {
    if (a.distance_m != b.distance_m) return a.distance_m < b.distance_m;
    return a.driver_id < b.driver_id;
  });
  return candidates;
}

std::optional<std::string> checkStatusChange(DriverStatus from, DriverStatus to) {
  if (to == DriverStatus::kOnTrip) return "on_trip is set by dispatch, not by the driver";
  if (from == DriverStatus::kOnTrip) return "driver is on a trip; complete it first";
  return std::nullopt;
}

}  // namespace strangler::monolith::domain
