#pragma once

#include <cstdint>
#include <optional>
#include <string>

namespace strangler::monolith::domain {

/// A point on Earth in integer micro-degrees (the legacy storage unit: no float drift).
struct GeoPoint {
  int64_t lat_e6 = 0;
  int64_t lng_e6 = 0;

  /// Builds a point from decimal degrees, rounding to the nearest micro-degree.
  static GeoPoint fromDegrees(double lat, double lng);
  double latDegrees() const { return static_cast<double>(lat_e6) / 1e6; }
  double lngDegrees() const { return static_cast<double>(lng_e6) / 1e6; }
  bool operator==(const GeoPoint&) const = default;
};

/// A latitude/longitude rectangle, in micro-degrees, inclusive.
struct BoundingBox {
  int64_t min_lat_e6 = 0;
  int64_t max_lat_e6 = 0;
  int64_t min_lng_e6 = 0;
  int64_t max_lng_e6 = 0;
};

/// Why a coordinate pair is not a place on Earth, or nullopt when it is.
std::optional<std::string> checkDegrees(double lat, double lng);

/// Great-circle distance in metres (haversine, mean Earth radius).
double distanceMeters(const GeoPoint& a, const GeoPoint& b);

/// The smallest box that contains every point within `radius_m` of `center`
/// (a cheap index pre-filter; callers still check the exact distance).
BoundingBox boundingBox(const GeoPoint& center, double radius_m);

}  // namespace strangler::monolith::domain
