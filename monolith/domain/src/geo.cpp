#include "monolith/domain/geo.h"

#include <algorithm>
#include <cmath>

namespace strangler::monolith::domain {
namespace {

constexpr double kEarthRadiusM = 6371008.8;
constexpr double kPi = 3.14159265358979323846;

double radians(double degrees) {
  return degrees * kPi / 180.0;
}

}  // namespace

GeoPoint GeoPoint::fromDegrees(double lat, double lng) {
  return GeoPoint{static_cast<int64_t>(std::llround(lat * 1e6)),
                  static_cast<int64_t>(std::llround(lng * 1e6))};
}

std::optional<std::string> checkDegrees(double lat, double lng) {
  if (!std::isfinite(lat) || lat < -90.0 || lat > 90.0) return "lat must be within -90..90";
  if (!std::isfinite(lng) || lng < -180.0 || lng > 180.0) return "lng must be within -180..180";
  return std::nullopt;
}

double distanceMeters(const GeoPoint& a, const GeoPoint& b) {
  const double lat1 = radians(a.latDegrees());
  const double lat2 = radians(b.latDegrees());
  const double dlat = lat2 - lat1;
  const double dlng = radians(b.lngDegrees() - a.lngDegrees());
  const double h = std::sin(dlat / 2) * std::sin(dlat / 2) +
                   std::cos(lat1) * std::cos(lat2) * std::sin(dlng / 2) * std::sin(dlng / 2);
  return 2 * kEarthRadiusM * std::asin(std::min(1.0, std::sqrt(h)));
}

BoundingBox boundingBox(const GeoPoint& center, double radius_m) {
  const double dlat = radius_m / kEarthRadiusM * 180.0 / kPi;
  // Near the poles a longitude band degenerates; widen to the full circle there.
  const double cos_lat = std::cos(radians(center.latDegrees()));
  const double dlng = cos_lat < 1e-6 ? 180.0 : std::min(180.0, dlat / cos_lat);
  const auto e6 = [](double degrees) { return static_cast<int64_t>(std::ceil(degrees * 1e6)); };
  return BoundingBox{center.lat_e6 - e6(dlat), center.lat_e6 + e6(dlat), center.lng_e6 - e6(dlng),
                     center.lng_e6 + e6(dlng)};
}

}  // namespace strangler::monolith::domain
