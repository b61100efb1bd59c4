#include "strangler/acl/legacy_drivers.h"

#include <gtest/gtest.h>

#include <random>

namespace strangler::acl::legacy_drivers {
namespace {

using nlohmann::json;

TEST(LegacyDriversTest, LegacyToModelToLegacyIsIdentity) {
  std::mt19937_64 rng(11);
  const char* statuses[] = {"offline", "available"};
  for (int i = 0; i < 1000; ++i) {
    const double lat =
        static_cast<double>(static_cast<int64_t>(rng() % 180000001) - 90000000) / 1e6;
    const double lng =
        static_cast<double>(static_cast<int64_t>(rng() % 360000001) - 180000000) / 1e6;
    const json legacy{{"name", "Driver " + std::to_string(rng() % 1000)},
                      {"phone", "+82-10-" + std::to_string(100000 + rng() % 900000)},
                      {"car", {{"plate", std::to_string(rng() % 100) + "가"}, {"model", "K5"}}},
                      {"status", statuses[rng() % 2]},
                      {"location", {{"lat", lat}, {"lng", lng}}}};
    auto registration = registrationFromLegacy(legacy);
    ASSERT_TRUE(registration.ok()) << registration.error().message;
    ds::domain::Driver driver;
    driver.id = i + 1;
    driver.name = registration->name;
    driver.phone = registration->phone;
    driver.vehicle = registration->vehicle;
    driver.status = registration->status;
    driver.location = registration->location;
    const json back = toLegacy(driver, 0);
    EXPECT_EQ(back["name"], legacy["name"]);
    EXPECT_EQ(back["phone"], legacy["phone"]);
    EXPECT_EQ(back["car"], legacy["car"]);
    EXPECT_EQ(back["status"], legacy["status"]);
    EXPECT_EQ(back["location"].dump(), legacy["location"].dump()) << i;
  }
}

TEST(LegacyDriversTest, RoundsToTheLegacyMicroDegree) {
  auto location = locationFromLegacy(json{{"lat", 37.56650049}, {"lng", -126.9780006}});
  ASSERT_TRUE(location.ok());
  EXPECT_DOUBLE_EQ(location->lat, 37.5665);
  EXPECT_DOUBLE_EQ(location->lng, -126.978001);
}

TEST(LegacyDriversTest, BadPayloadsGiveLegacyMessagesInLegacyOrder) {
  auto missing = registrationFromLegacy(json::object());
  ASSERT_FALSE(missing.ok());
  EXPECT_EQ(missing.error().code, "invalid_request");
  EXPECT_EQ(missing.error().message, "name: is required; phone: is required; car: is required");
  auto values = registrationFromLegacy(
      json{{"name", ""}, {"phone", "+82-10-1111-2222"}, {"car", {{"plate", ""}, {"model", "K5"}}}});
  EXPECT_EQ(values.error().message, "name: must be 1..100 bytes; car.plate: must be 1..20 bytes");
  auto status = statusChangeFromLegacy(json{{"status", "busy"}});
  EXPECT_EQ(status.error().message, "status: must be \"offline\" or \"available\"");
  auto off_earth = locationFromLegacy(json{{"lat", 91}, {"lng", 0}});
  EXPECT_EQ(off_earth.error().message, "location: lat must be within -90..90");
}

TEST(LegacyDriversTest, ServiceErrorsAreRenamedToLegacyFields) {
  const auto legacy = toLegacyError({"invalid_request", "vehicle.plate: must be 1..20 bytes"});
  EXPECT_EQ(legacy.message, "car.plate: must be 1..20 bytes");
}

}  // namespace
}  // namespace strangler::acl::legacy_drivers
