// driver-service's store and use cases on real databases (SQLite file, PostgreSQL server).
#include <gtest/gtest.h>

#include <algorithm>
#include <memory>
#include <random>

#include "driver_service/application/driver_service_impl.h"
#include "driver_service/monolith/monolith_trip_stats.h"
#include "driver_service/persistence/soci_driver_store.h"
#include "strangler/testing/postgres.h"
#include "strangler/testing/temp_dir.h"

namespace strangler::driver_service {
namespace {

class FixedClock : public ports::Clock {
 public:
  domain::EpochSeconds now() override { return 1800000000; }
};

class DriverStoreTest : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    std::string conn;
    if (GetParam() == "postgresql") {
      STRANGLER_NEED_POSTGRES();
      schema_ =
          std::make_unique<strangler::testing::PostgresSchema>(*strangler::testing::postgresDsn());
      conn = schema_->connectionString();
    } else {
      conn = "sqlite3://db=" + dir_.file("ds.db");
    }
    pool_ = std::make_unique<common::SessionPool>(*common::parseConnectionString(conn), 4);
    persistence::ensureSchema(*pool_);
    persistence::ensureSchema(*pool_);  // idempotent
    store_ = std::make_unique<persistence::SociDriverStore>(*pool_);
    service_ = std::make_unique<application::DriverServiceImpl>(*store_, stats_, clock_);
  }

  strangler::testing::TempDir dir_;
  std::unique_ptr<strangler::testing::PostgresSchema> schema_;
  std::unique_ptr<common::SessionPool> pool_;
  std::unique_ptr<persistence::SociDriverStore> store_;
  monolith::NoTripStats stats_;
  FixedClock clock_;
  std::unique_ptr<application::DriverServiceImpl> service_;
};

TEST_P(DriverStoreTest, StoresAndUpdatesDrivers) {
  auto created = service_->registerDriver({"최 서연",
                                           "+82-10-5555-6666",
                                           {"34나 5678", "Niro"},
                                           domain::DriverStatus::kAvailable,
                                           domain::Location{37.5665, 126.978}});
  ASSERT_TRUE(created.ok()) << created.error().message;
  auto found = store_->find(created->id);
  ASSERT_TRUE(found);
  EXPECT_EQ(found->name, "최 서연");
  EXPECT_EQ(found->vehicle, (domain::Vehicle{"34나 5678", "Niro"}));
  EXPECT_EQ(found->location, (domain::Location{37.5665, 126.978}));
  EXPECT_EQ(found->status, domain::DriverStatus::kAvailable);
  EXPECT_EQ(found->location_updated_at, 1800000000);

  ASSERT_TRUE(service_->moveDriver(created->id, {35.1796, 129.0756}).ok());
  ASSERT_TRUE(service_->setStatus(created->id, domain::DriverStatus::kOffline).ok());
  found = store_->find(created->id);
  EXPECT_EQ(found->location, (domain::Location{35.1796, 129.0756}));
  EXPECT_EQ(found->status, domain::DriverStatus::kOffline);
  EXPECT_FALSE(store_->find(created->id + 100));
  EXPECT_EQ(store_->count(), 1);
  EXPECT_EQ(service_->setStatus(created->id + 100, domain::DriverStatus::kOffline).error().code,
            ports::errors::kNotFound);
}

TEST_P(DriverStoreTest, GridNearbyMatchesABruteForceScan) {
  std::mt19937_64 rng(3);
  std::vector<domain::Driver> all;
  for (int i = 0; i < 300; ++i) {
    // Clustered around a cell corner so many drivers sit on cell borders.
    const double lat = 37.56 + (static_cast<double>(rng() % 20001) - 10000) / 1e6 * 3;
    const double lng = 126.97 + (static_cast<double>(rng() % 20001) - 10000) / 1e6 * 3;
    auto d = service_->registerDriver(
        {"D" + std::to_string(i),
         "+82-10-0000-0000",
         {"P" + std::to_string(i), "K5"},
         rng() % 4 ? domain::DriverStatus::kAvailable : domain::DriverStatus::kOffline,
         domain::Location{lat, lng}});
    ASSERT_TRUE(d.ok());
    all.push_back(*d);
  }
  for (double radius : {150.0, 900.0, 2500.0}) {
    const domain::Location center{37.56, 126.97};
    auto found = service_->nearby(center, radius, 100);
    ASSERT_TRUE(found.ok());
    std::vector<std::pair<double, int64_t>> expected;
    for (const auto& d : all) {
      const double distance = domain::distanceMeters(*d.location, center);
      if (d.status == domain::DriverStatus::kAvailable && distance <= radius)
        expected.emplace_back(distance, d.id);
    }
    std::sort(expected.begin(), expected.end());
    if (expected.size() > 100) expected.resize(100);
    ASSERT_EQ(found->size(), expected.size()) << radius;
    for (size_t i = 0; i < expected.size(); ++i)
      EXPECT_EQ((*found)[i].driver.id, expected[i].second);
  }
}

INSTANTIATE_TEST_SUITE_P(Engines, DriverStoreTest, ::testing::Values("sqlite3", "postgresql"),
                         [](const auto& param_info) { return param_info.param; });

}  // namespace
}  // namespace strangler::driver_service
