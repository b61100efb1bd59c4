#include <gtest/gtest.h>

#include "fakes.h"
#include "monolith/application/demo_seeder.h"
#include "monolith/application/rideshare_service_impl.h"

namespace strangler::monolith::application {
namespace {

using domain::DriverStatus;
using domain::GeoPoint;

class RideShareServiceTest : public ::testing::Test {
 protected:
  int64_t addPassenger() {
    auto p = service_.registerPassenger({"Kim Ji-woo", "+82-10-1111-2222", std::nullopt});
    EXPECT_TRUE(p.ok());
    return p->id;
  }
  int64_t addDriver(double lat, double lng, DriverStatus status = DriverStatus::kAvailable) {
    auto d = service_.registerDriver({"Park Min-jun",
                                      "+82-10-3333-4444",
                                      {"12가 3456", "Kia K5"},
                                      status,
                                      GeoPoint::fromDegrees(lat, lng)});
    EXPECT_TRUE(d.ok()) << d.error().message;
    return d->driver.id;
  }
  ports::TripRequest tripFrom(int64_t passenger, double lat, double lng) {
    return {passenger, GeoPoint::fromDegrees(lat, lng), GeoPoint::fromDegrees(37.4979, 127.0276)};
  }

  testing::FakeUnitOfWork uow_;
  testing::RecordingNotifier notifier_;
  testing::FixedClock clock_;
  RideShareServiceImpl service_{uow_, notifier_, clock_};
};

TEST_F(RideShareServiceTest, TripRequestAssignsNearestAvailableDriver) {
  const auto passenger = addPassenger();
  addDriver(37.5700, 126.9780);                          // ~390 m away
  const auto nearest = addDriver(37.5670, 126.9780);     // ~55 m
  addDriver(37.5666, 126.9780, DriverStatus::kOffline);  // nearer, but offline

  auto trip = service_.requestTrip(tripFrom(passenger, 37.5665, 126.9780));
  ASSERT_TRUE(trip.ok()) << trip.error().message;
  EXPECT_EQ(trip->trip.driver_id, nearest);
  EXPECT_EQ(trip->trip.status, domain::TripStatus::kAssigned);
  EXPECT_NEAR(static_cast<double>(trip->trip.distance_m), 8770, 80);
  EXPECT_EQ(trip->trip.fare_cents, domain::FareSchedule{}.fareCents(trip->trip.distance_m));
  EXPECT_EQ(uow_.tables.drivers.at(nearest).status, DriverStatus::kOnTrip);
  ASSERT_EQ(notifier_.assigned.size(), 1u);
  EXPECT_EQ(notifier_.assigned[0].second, nearest);
}

TEST_F(RideShareServiceTest, NoDriverNearbyLeavesNothingBehind) {
  const auto passenger = addPassenger();
  addDriver(35.1796, 129.0756);  // Busan
  auto trip = service_.requestTrip(tripFrom(passenger, 37.5665, 126.9780));
  ASSERT_FALSE(trip.ok());
  EXPECT_EQ(trip.error().code, ports::errors::kNoDriver);
  EXPECT_TRUE(uow_.tables.trips.empty());
  EXPECT_TRUE(notifier_.assigned.empty());
}

TEST_F(RideShareServiceTest, SecondRequestGetsTheNextDriver) {
  const auto passenger = addPassenger();
  const auto first = addDriver(37.5670, 126.9780);
  const auto second = addDriver(37.5700, 126.9780);
  auto a = service_.requestTrip(tripFrom(passenger, 37.5665, 126.9780));
  auto b = service_.requestTrip(tripFrom(passenger, 37.5665, 126.9780));
  auto c = service_.requestTrip(tripFrom(passenger, 37.5665, 126.9780));
  ASSERT_TRUE(a.ok() && b.ok());
  EXPECT_EQ(a->trip.driver_id, first);
  EXPECT_EQ(b->trip.driver_id, second);
  ASSERT_FALSE(c.ok());
  EXPECT_EQ(c.error().code, ports::errors::kNoDriver);
}

TEST_F(RideShareServiceTest, CompletingIssuesInvoiceAndFreesDriverOnce) {
  const auto passenger = addPassenger();
  const auto driver = addDriver(37.5670, 126.9780);
  auto trip = service_.requestTrip(tripFrom(passenger, 37.5665, 126.9780));
  ASSERT_TRUE(trip.ok());
  clock_.time += 900;

  auto done = service_.completeTrip(trip->trip.id);
  ASSERT_TRUE(done.ok()) << done.error().message;
  EXPECT_EQ(done->trip.status, domain::TripStatus::kCompleted);
  EXPECT_EQ(done->trip.completed_at, clock_.time);
  ASSERT_TRUE(done->invoice_id);
  auto invoice = service_.invoice(*done->invoice_id);
  ASSERT_TRUE(invoice.ok());
  EXPECT_EQ(invoice->amount_cents, trip->trip.fare_cents);
  EXPECT_EQ(invoice->passenger_id, passenger);
  EXPECT_EQ(uow_.tables.drivers.at(driver).status, DriverStatus::kAvailable);
  EXPECT_EQ(service_.driver(driver)->completed_trips, 1);

  auto again = service_.completeTrip(trip->trip.id);
  ASSERT_FALSE(again.ok());
  EXPECT_EQ(again.error().code, ports::errors::kConflict);
  EXPECT_EQ(uow_.tables.invoices.size(), 1u);
}

TEST_F(RideShareServiceTest, UnknownIdsAreNotFound) {
  EXPECT_EQ(service_.passenger(42).error().code, ports::errors::kNotFound);
  EXPECT_EQ(service_.driver(42).error().code, ports::errors::kNotFound);
  EXPECT_EQ(service_.trip(42).error().code, ports::errors::kNotFound);
  EXPECT_EQ(service_.completeTrip(42).error().code, ports::errors::kNotFound);
  EXPECT_EQ(service_.invoice(42).error().code, ports::errors::kNotFound);
  EXPECT_EQ(service_.requestTrip(tripFrom(42, 37.5, 127.0)).error().code, ports::errors::kNotFound);
  EXPECT_EQ(service_.moveDriver(42, GeoPoint::fromDegrees(1, 1)).error().code,
            ports::errors::kNotFound);
}

TEST_F(RideShareServiceTest, DriverCannotLeaveATripByStatusChange) {
  const auto passenger = addPassenger();
  const auto driver = addDriver(37.5670, 126.9780);
  ASSERT_TRUE(service_.requestTrip(tripFrom(passenger, 37.5665, 126.9780)).ok());
  auto offline = service_.setDriverStatus(driver, DriverStatus::kOffline);
  ASSERT_FALSE(offline.ok());
  EXPECT_EQ(offline.error().code, ports::errors::kConflict);
  auto on_trip = service_.setDriverStatus(driver, DriverStatus::kOnTrip);
  EXPECT_EQ(on_trip.error().code, ports::errors::kInvalid);
  EXPECT_EQ(uow_.tables.drivers.at(driver).status, DriverStatus::kOnTrip);
}

TEST_F(RideShareServiceTest, InvalidRegistrationNamesEveryField) {
  auto result = service_.registerDriver({"", "x", {"", "Kia"}, DriverStatus::kOffline, {}});
  ASSERT_FALSE(result.ok());
  EXPECT_EQ(result.error().code, ports::errors::kInvalid);
  EXPECT_NE(result.error().message.find("name"), std::string::npos);
  EXPECT_NE(result.error().message.find("phone"), std::string::npos);
  EXPECT_NE(result.error().message.find("car.plate"), std::string::npos);
  EXPECT_TRUE(uow_.tables.drivers.empty());
}

TEST_F(RideShareServiceTest, NearbyListsAvailableDriversByDistance) {
  const auto far_one = addDriver(37.5700, 126.9780);
  const auto near_one = addDriver(37.5670, 126.9780);
  addDriver(37.5668, 126.9780, DriverStatus::kOffline);
  auto nearby = service_.nearbyDrivers(GeoPoint::fromDegrees(37.5665, 126.9780), 1000, 10);
  ASSERT_TRUE(nearby.ok());
  ASSERT_EQ(nearby->size(), 2u);
  EXPECT_EQ((*nearby)[0].driver.id, near_one);
  EXPECT_EQ((*nearby)[1].driver.id, far_one);
  EXPECT_FALSE(service_.nearbyDrivers(GeoPoint::fromDegrees(37.5, 127), 0, 10).ok());
}

TEST(DemoSeederTest, IsDeterministicAndRunsOnlyOnAnEmptyDatabase) {
  testing::FakeUnitOfWork first;
  testing::FakeUnitOfWork second;
  const auto report = seedDemoData(first, 50);
  EXPECT_TRUE(report.seeded);
  EXPECT_EQ(report.trips, 50);
  seedDemoData(second, 50);
  ASSERT_EQ(first.tables.drivers.size(), 50u);
  ASSERT_EQ(first.tables.invoices.size(), 50u);
  for (const auto& [id, driver] : first.tables.drivers) {
    const auto& twin = second.tables.drivers.at(id);
    EXPECT_EQ(driver.name, twin.name);
    EXPECT_EQ(driver.vehicle.plate, twin.vehicle.plate);
    EXPECT_EQ(driver.location, twin.location);
  }
  EXPECT_FALSE(seedDemoData(first, 50).seeded);
  EXPECT_EQ(first.tables.drivers.size(), 50u);
}

}  // namespace
}  // namespace strangler::monolith::application
