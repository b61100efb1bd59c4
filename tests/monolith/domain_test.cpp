#include <gtest/gtest.h>

#include <cmath>

#include "monolith/domain/geo.h"
#include "monolith/domain/rules.h"

namespace strangler::monolith::domain {
namespace {

const GeoPoint kCityHall = GeoPoint::fromDegrees(37.5665, 126.9780);
const GeoPoint kGangnamStation = GeoPoint::fromDegrees(37.4979, 127.0276);

TEST(GeoTest, StoresMicroDegreesRoundedToNearest) {
  const auto p = GeoPoint::fromDegrees(37.5665004, -126.9780006);
  EXPECT_EQ(p.lat_e6, 37566500);
  EXPECT_EQ(p.lng_e6, -126978001);
  EXPECT_DOUBLE_EQ(GeoPoint::fromDegrees(37.5665, 126.978).latDegrees(), 37.5665);
}

TEST(GeoTest, HaversineMatchesKnownDistance) {
  // City Hall to Gangnam Station is about 8.8 km as the crow flies.
  EXPECT_NEAR(distanceMeters(kCityHall, kGangnamStation), 8770, 80);
  EXPECT_DOUBLE_EQ(distanceMeters(kCityHall, kCityHall), 0.0);
  EXPECT_NEAR(distanceMeters(GeoPoint::fromDegrees(0, 0), GeoPoint::fromDegrees(0, 1)), 111195, 5);
}

TEST(GeoTest, BoundingBoxContainsEveryPointWithinRadius) {
  const double radius = 5000;
  const auto box = boundingBox(kCityHall, radius);
  for (int bearing = 0; bearing < 360; bearing += 15) {
    const double rad = bearing * 3.14159265358979 / 180;
    // A point just inside the circle in this direction.
    const double dlat = (radius * 0.999 / 6371008.8) * std::cos(rad) * 180 / 3.14159265358979;
    const double dlng = (radius * 0.999 / 6371008.8) * std::sin(rad) * 180 / 3.14159265358979 /
                        std::cos(37.5665 * 3.14159265358979 / 180);
    const auto p = GeoPoint::fromDegrees(37.5665 + dlat, 126.978 + dlng);
    ASSERT_LE(distanceMeters(p, kCityHall), radius);
    EXPECT_TRUE(p.lat_e6 >= box.min_lat_e6 && p.lat_e6 <= box.max_lat_e6) << bearing;
    EXPECT_TRUE(p.lng_e6 >= box.min_lng_e6 && p.lng_e6 <= box.max_lng_e6) << bearing;
  }
}

TEST(GeoTest, RejectsCoordinatesOffTheEarth) {
  EXPECT_FALSE(checkDegrees(37.5, 126.9));
  EXPECT_TRUE(checkDegrees(90.0001, 0));
  EXPECT_TRUE(checkDegrees(0, -180.5));
  EXPECT_TRUE(checkDegrees(std::nan(""), 0));
}

TEST(FareScheduleTest, ChargesBasePlusDistanceWithMinimum) {
  const FareSchedule fares;
  EXPECT_EQ(fares.fareCents(0), 500);             // minimum
  EXPECT_EQ(fares.fareCents(10000), 250 + 1200);  // base + 10 km
  EXPECT_EQ(fares.fareCents(10004), 1450);        // 1200.48 rounds down
  EXPECT_EQ(fares.fareCents(10005), 1451);        // 1200.6 rounds up
}

TEST(ContactRulesTest, ReportsEveryViolationByField) {
  EXPECT_TRUE(checkContact("Kim", "+82-10-1234-5678", std::string("kim@example.com")).empty());
  const auto violations = checkContact("", "call me", std::string("nope"));
  ASSERT_EQ(violations.size(), 3u);
  EXPECT_EQ(violations[0].field, "name");
  EXPECT_EQ(violations[1].field, "phone");
  EXPECT_EQ(violations[2].field, "email");
  EXPECT_EQ(checkVehicle({"", ""}).size(), 2u);
}

Driver driverAt(int64_t id, DriverStatus status, std::optional<GeoPoint> at) {
  Driver d;
  d.id = id;
  d.status = status;
  d.location = at;
  return d;
}

TEST(DispatchTest, RanksAvailableDriversNearestFirst) {
  const auto near = GeoPoint::fromDegrees(37.5670, 126.9780);
  const auto nearer = GeoPoint::fromDegrees(37.5666, 126.9780);
  const auto far_away = GeoPoint::fromDegrees(37.70, 126.9780);  // ~15 km
  const std::vector<Driver> drivers{
      driverAt(1, DriverStatus::kAvailable, near),
      driverAt(2, DriverStatus::kOffline, nearer),
      driverAt(3, DriverStatus::kAvailable, nearer),
      driverAt(4, DriverStatus::kAvailable, far_away),
      driverAt(5, DriverStatus::kAvailable, std::nullopt),
      driverAt(6, DriverStatus::kOnTrip, nearer),
  };
  const auto ranked = rankCandidates(drivers, kCityHall, kDispatchRadiusM);
  ASSERT_EQ(ranked.size(), 2u);
  EXPECT_EQ(ranked[0].driver_id, 3);
  EXPECT_EQ(ranked[1].driver_id, 1);
}

TEST(DispatchTest, BreaksDistanceTiesById) {
  const auto spot = GeoPoint::fromDegrees(37.5670, 126.9780);
  const auto ranked = rankCandidates(
      {driverAt(9, DriverStatus::kAvailable, spot), driverAt(4, DriverStatus::kAvailable, spot)},
      kCityHall, kDispatchRadiusM);
  ASSERT_EQ(ranked.size(), 2u);
  EXPECT_EQ(ranked[0].driver_id, 4);
}

TEST(DriverStatusTest, OnTripIsOwnedByDispatch) {
  EXPECT_FALSE(checkStatusChange(DriverStatus::kOffline, DriverStatus::kAvailable));
  EXPECT_FALSE(checkStatusChange(DriverStatus::kAvailable, DriverStatus::kOffline));
  EXPECT_TRUE(checkStatusChange(DriverStatus::kAvailable, DriverStatus::kOnTrip));
  EXPECT_TRUE(checkStatusChange(DriverStatus::kOnTrip, DriverStatus::kOffline));
  EXPECT_EQ(driverStatusFromString("on_trip"), DriverStatus::kOnTrip);
  EXPECT_FALSE(driverStatusFromString("busy"));
}

}  // namespace
}  // namespace strangler::monolith::domain
