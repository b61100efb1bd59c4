#include "driver_service/domain/driver.h"

#include <algorithm>
#include <cmath>

namespace strangler::driver_service::domain {
namespace {

constexpr double kEarthRadiusM = 6371008.8;
constexpr double kPi = 3.14159265358979323846;

double radians(double degrees) {
  return degrees * kPi / 180.0;
}

}  // namespace

const char* toString(DriverStatus status) {
  switch (status) {
    case DriverStatus::kOffline:
      return "OFFLINE";
    case DriverStatus::kAvailable:
      return "AVAILABLE";
    case DriverStatus::kOnTrip:
      return "ON_TRIP";
  }
  return "OFFLINE";
}

std::optional<DriverStatus> driverStatusFromString(const std::string& text) {
  if (text == "OFFLINE") return DriverStatus::kOffline;
  if (text == "AVAILABLE") return DriverStatus::kAvailable;
  if (text == "ON_TRIP") return DriverStatus::kOnTrip;
  return std::nullopt;
}

std::vector<Violation> checkDriver(const std::string& name, const std::string& phone,
                                   const Vehicle& vehicle) {
  std::vector<Violation> violations;
  if (name.empty() || name.size() > 100) violations.push_back({"name", "must be 1..100 bytes"});
  const bool phone_chars_ok = std::all_of(phone.begin(), phone.end(), [](char c) {
    return (c >= '0' && c <= '9') || c == '+' || c == '-' || c == ' ';
  });
  const auto digits =
      std::count_if(phone.begin(), phone.end(), [](char c) { return c >= '0' && c <= '9'; });
  if (!phone_chars_ok || digits < 6 || phone.size() > 32) {
    violations.push_back({"phone", "must be 6..32 characters of digits, '+', '-' or spaces"});
  }
  if (vehicle.plate.empty() || vehicle.plate.size() > 20) {
    violations.push_back({"vehicle.plate", "must be 1..20 bytes"});
  }
  if (vehicle.model.empty() || vehicle.model.size() > 60) {
    violations.push_back({"vehicle.model", "must be 1..60 bytes"});
  }
  return violations;
}

std::optional<std::string> checkLocation(const Location& l) {
  if (!std::isfinite(l.lat) || l.lat < -90.0 || l.lat > 90.0) return "lat must be within -90..90";
  if (!std::isfinite(l.lng) || l.lng < -180.0 || l.lng > 180.0)
    return "lng must be within -180..180";
  return std::nullopt;
}

std::optional<std::string> checkStatusChange(DriverStatus from, DriverStatus to) {
  if (to == DriverStatus::kOnTrip) return "on_trip is set by dispatch, not by the driver";
  if (from == DriverStatus::kOnTrip) return "driver is on a trip; complete it first";
  return std::nullopt;
}

double distanceMeters(const Location& a, const Location& b) {
  const double lat1 = radians(a.lat);
  const double lat2 = radians(b.lat);
  const double dlat = lat2 - lat1;
  const double dlng = radians(b.lng - a.lng);
  const double h = std::sin(dlat / 2) * std::sin(dlat / 2) +
                   std::cos(lat1) * std::cos(lat2) * std::sin(dlng / 2) * std::sin(dlng / 2);
  return 2 * kEarthRadiusM * std::asin(std::min(1.0, std::sqrt(h)));
}

int64_t cellOf(double degrees) {
  return static_cast<int64_t>(std::floor(degrees * kCellsPerDegree));
}

CellRange cellsAround(const Location& center, double radius_m) {
  const double dlat = radius_m / kEarthRadiusM * 180.0 / kPi;
  const double cos_lat = std::cos(radians(center.lat));
  const double dlng = cos_lat < 1e-6 ? 180.0 : std::min(180.0, dlat / cos_lat);
  // One extra cell on each side absorbs rounding at cell borders.
  return CellRange{cellOf(center.lat - dlat) - 1, cellOf(center.lat + dlat) + 1,
                   cellOf(center.lng - dlng) - 1, cellOf(center.lng + dlng) + 1};
}

}  // namespace strangler::driver_service::domain
