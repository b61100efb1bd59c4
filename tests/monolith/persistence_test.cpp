// The SOCI repositories against real databases: an SQLite file and a PostgreSQL server.
#include <gtest/gtest.h>
#include <soci/soci.h>

#include <atomic>
#include <memory>
#include <set>
#include <sstream>
#include <thread>

#include "fakes.h"
#include "monolith/application/demo_seeder.h"
#include "monolith/application/rideshare_service_impl.h"
#include "monolith/persistence/schema.h"
#include "monolith/persistence/soci_unit_of_work.h"
#include "strangler/testing/postgres.h"
#include "strangler/testing/temp_dir.h"

namespace strangler::monolith::persistence {
namespace {

using domain::DriverStatus;
using domain::GeoPoint;
using Mode = ports::UnitOfWork::Mode;

/// A migrated database of one engine, owned by the test.
class Database {
 public:
  explicit Database(const std::string& engine) {
    std::string conn;
    if (engine == "sqlite3") {
      dir_ = std::make_unique<strangler::testing::TempDir>();
      conn = "sqlite3://db=" + dir_->file("monolith.db");
    } else {
      schema_ =
          std::make_unique<strangler::testing::PostgresSchema>(*strangler::testing::postgresDsn());
      conn = schema_->connectionString();
    }
    auto target = common::parseConnectionString(conn);
    pool_ = std::make_unique<common::SessionPool>(*target, 8);
    soci::session sql(pool_->pool());
    ensureSchema(sql, pool_->backend());
    uow_ = std::make_unique<SociUnitOfWork>(*pool_);
  }
  SociUnitOfWork& uow() { return *uow_; }
  common::SessionPool& pool() { return *pool_; }

 private:
  std::unique_ptr<strangler::testing::TempDir> dir_;
  std::unique_ptr<strangler::testing::PostgresSchema> schema_;
  std::unique_ptr<common::SessionPool> pool_;
  std::unique_ptr<SociUnitOfWork> uow_;
};

class PersistenceTest : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    if (GetParam() == "postgresql") STRANGLER_NEED_POSTGRES();
    db_ = std::make_unique<Database>(GetParam());
  }
  domain::Driver newDriver(double lat, double lng, DriverStatus status) {
    domain::Driver d;
    d.name = "최 서연";  // UTF-8 must survive both engines
    d.phone = "+82-10-5555-6666";
    d.vehicle = {"34나 5678", "Hyundai Ioniq 5"};
    d.status = status;
    d.location = GeoPoint::fromDegrees(lat, lng);
    d.location_updated_at = 1800000000;
    d.created_at = 1800000000;
    d.updated_at = 1800000000;
    return d;
  }
  std::unique_ptr<Database> db_;
};

TEST_P(PersistenceTest, RoundTripsEveryFieldIncludingNulls) {
  auto& uow = db_->uow();
  domain::Passenger with_email{0, "Kim Ji-woo", "+82-10-1", std::string("a@b.c"), 1700000000};
  domain::Passenger without_email{0, "Lee Do-yun", "+82-10-2", std::nullopt, 1700000001};
  domain::Driver placed = newDriver(37.5665, 126.978, DriverStatus::kAvailable);
  domain::Driver unplaced = placed;
  unplaced.location.reset();
  unplaced.location_updated_at.reset();
  uow.run(Mode::kWrite, [&](ports::Repositories& repos) {
    with_email = repos.passengers().insert(with_email);
    without_email = repos.passengers().insert(without_email);
    placed = repos.drivers().insert(placed);
    unplaced = repos.drivers().insert(unplaced);
    return true;
  });
  uow.run(Mode::kRead, [&](ports::Repositories& repos) {
    auto p1 = repos.passengers().find(with_email.id);
    auto p2 = repos.passengers().find(without_email.id);
    EXPECT_EQ(p1->email, "a@b.c");
    EXPECT_FALSE(p2->email);
    EXPECT_EQ(p2->created_at, 1700000001);
    auto d1 = repos.drivers().find(placed.id);
    EXPECT_EQ(d1->name, "최 서연");
    EXPECT_EQ(d1->vehicle.plate, "34나 5678");
    EXPECT_EQ(d1->location, placed.location);
    EXPECT_EQ(d1->status, DriverStatus::kAvailable);
    auto d2 = repos.drivers().find(unplaced.id);
    EXPECT_FALSE(d2->location);
    EXPECT_FALSE(d2->location_updated_at);
    // A passenger id is not a driver id, though both live in `users`.
    EXPECT_FALSE(repos.drivers().find(with_email.id));
    EXPECT_FALSE(repos.passengers().find(placed.id));
    EXPECT_EQ(repos.passengers().count(), 2);
    EXPECT_EQ(repos.drivers().count(), 2);
    return true;
  });

  domain::Trip trip;
  trip.passenger_id = with_email.id;
  trip.driver_id = placed.id;
  trip.pickup = GeoPoint::fromDegrees(37.5, 127.0);
  trip.dropoff = GeoPoint::fromDegrees(37.6, 127.1);
  trip.distance_m = 14000;
  trip.fare_cents = 1930;
  trip.requested_at = 1800000100;
  trip.updated_at = 1800000100;
  uow.run(Mode::kWrite, [&](ports::Repositories& repos) {
    trip = repos.trips().insert(trip);
    EXPECT_TRUE(repos.trips().markCompleted(trip.id, 1800000900));
    EXPECT_FALSE(repos.trips().markCompleted(trip.id, 1800000999));  // only once
    domain::Invoice invoice{
        0, trip.id, with_email.id, 1930, "USD", domain::InvoiceStatus::kIssued, 1800000900};
    repos.invoices().insert(invoice);
    return true;
  });
  uow.run(Mode::kRead, [&](ports::Repositories& repos) {
    auto stored = repos.trips().find(trip.id);
    EXPECT_EQ(stored->status, domain::TripStatus::kCompleted);
    EXPECT_EQ(stored->completed_at, 1800000900);
    EXPECT_EQ(stored->dropoff, trip.dropoff);
    EXPECT_EQ(repos.trips().countCompletedByDriver(placed.id), 1);
    auto invoice = repos.invoices().findByTrip(trip.id);
    EXPECT_EQ(invoice->currency, "USD");
    EXPECT_EQ(invoice->amount_cents, 1930);
    return true;
  });
}

TEST_P(PersistenceTest, UnitOfWorkRollsBackOnFalseAndOnThrow) {
  auto& uow = db_->uow();
  uow.run(Mode::kWrite, [&](ports::Repositories& repos) {
    repos.passengers().insert({0, "Gone", "+82-10-1234", std::nullopt, 1});
    return false;
  });
  EXPECT_THROW(uow.run(Mode::kWrite,
                       [&](ports::Repositories& repos) -> bool {
                         repos.passengers().insert({0, "Gone", "+82-10-1234", std::nullopt, 1});
                         throw std::runtime_error("use case failed");
                       }),
               std::runtime_error);
  int64_t count = -1;
  uow.run(Mode::kRead, [&](ports::Repositories& repos) {
    count = repos.passengers().count();
    return true;
  });
  EXPECT_EQ(count, 0);
}

TEST_P(PersistenceTest, ReservationSucceedsExactlyOnceUnderConcurrency) {
  auto& uow = db_->uow();
  domain::Driver driver = newDriver(37.5, 127.0, DriverStatus::kAvailable);
  uow.run(Mode::kWrite, [&](ports::Repositories& repos) {
    driver = repos.drivers().insert(driver);
    return true;
  });
  std::atomic<int> winners{0};
  std::vector<std::thread> threads;
  for (int i = 0; i < 8; ++i) {
    threads.emplace_back([&] {
      uow.run(Mode::kWrite, [&](ports::Repositories& repos) {
        if (repos.drivers().tryReserve(driver.id, 1800000000)) ++winners;
        return true;
      });
    });
  }
  for (auto& t : threads)
    t.join();
  EXPECT_EQ(winners.load(), 1);
}

TEST_P(PersistenceTest, ConcurrentTripRequestsNeverShareADriver) {
  strangler::monolith::testing::RecordingNotifier notifier;
  strangler::monolith::testing::FixedClock clock;
  application::RideShareServiceImpl service(db_->uow(), notifier, clock);
  auto passenger = service.registerPassenger({"Rider", "+82-10-9999-0000", std::nullopt});
  ASSERT_TRUE(passenger.ok());
  for (int i = 0; i < 5; ++i) {
    ASSERT_TRUE(service
                    .registerDriver({"Driver " + std::to_string(i),
                                     "+82-10-0000-0000",
                                     {"P" + std::to_string(i), "Kia K5"},
                                     DriverStatus::kAvailable,
                                     GeoPoint::fromDegrees(37.5665 + i * 0.001, 126.978)})
                    .ok());
  }
  std::mutex mutex;
  std::multiset<int64_t> assigned;
  std::atomic<int> refused{0};
  std::vector<std::thread> threads;
  for (int i = 0; i < 12; ++i) {
    threads.emplace_back([&] {
      auto trip = service.requestTrip({passenger->id, GeoPoint::fromDegrees(37.5665, 126.978),
                                       GeoPoint::fromDegrees(37.5, 127.0)});
      if (trip.ok()) {
        std::lock_guard lock(mutex);
        assigned.insert(trip->trip.driver_id);
      } else if (trip.error().code == ports::errors::kNoDriver) {
        ++refused;
      }
    });
  }
  for (auto& t : threads)
    t.join();
  EXPECT_EQ(assigned.size(), 5u);
  EXPECT_EQ(std::set<int64_t>(assigned.begin(), assigned.end()).size(), 5u);
  EXPECT_EQ(refused.load(), 7);
}

TEST_P(PersistenceTest, FindsAvailableDriversInsideTheBoxOnly) {
  auto& uow = db_->uow();
  std::vector<int64_t> ids;
  uow.run(Mode::kWrite, [&](ports::Repositories& repos) {
    ids.push_back(repos.drivers().insert(newDriver(37.5665, 126.978, DriverStatus::kAvailable)).id);
    ids.push_back(repos.drivers().insert(newDriver(37.5665, 126.978, DriverStatus::kOffline)).id);
    ids.push_back(
        repos.drivers().insert(newDriver(35.1796, 129.0756, DriverStatus::kAvailable)).id);
    return true;
  });
  std::vector<domain::Driver> found;
  uow.run(Mode::kRead, [&](ports::Repositories& repos) {
    found = repos.drivers().findAvailableIn(
        domain::boundingBox(GeoPoint::fromDegrees(37.5665, 126.978), 5000), 100);
    return true;
  });
  ASSERT_EQ(found.size(), 1u);
  EXPECT_EQ(found[0].id, ids[0]);
}

TEST_P(PersistenceTest, SchemaCreationIsIdempotent) {
  soci::session sql(db_->pool().pool());
  EXPECT_NO_THROW(ensureSchema(sql, db_->pool().backend()));
  std::string version;
  sql << "SELECT meta_value FROM app_meta WHERE meta_key = 'schema_version'", soci::into(version);
  EXPECT_EQ(version, std::to_string(kSchemaVersion));
}

TEST_P(PersistenceTest, DatabaseFailureBecomesStorageError) {
  {
    soci::session sql(db_->pool().pool());
    sql << "DROP TABLE invoices";
  }
  EXPECT_THROW(db_->uow().run(Mode::kRead,
                              [&](ports::Repositories& repos) {
                                repos.invoices().find(1);
                                return true;
                              }),
               ports::StorageError);
}

INSTANTIATE_TEST_SUITE_P(Engines, PersistenceTest, ::testing::Values("sqlite3", "postgresql"),
                         [](const auto& param_info) { return param_info.param; });

// Every row of the legacy tables, in key order, as text.
std::string dumpTables(common::SessionPool& pool) {
  soci::session sql(pool.pool());
  std::ostringstream out;
  soci::rowset<soci::row> users =
      (sql.prepare << "SELECT id, user_type, full_name, phone, COALESCE(email, ''),"
                      " COALESCE(car_plate, ''), COALESCE(lat_e6, 0), created_at"
                      " FROM users ORDER BY id");
  for (const auto& row : users) {
    for (std::size_t i = 0; i < row.size(); ++i) {
      const auto& props = row.get_properties(i);
      if (props.get_data_type() == soci::dt_string) {
        out << row.get<std::string>(i) << "|";
      } else if (props.get_data_type() == soci::dt_integer) {
        out << row.get<int>(i) << "|";
      } else if (props.get_data_type() == soci::dt_long_long) {
        out << row.get<long long>(i) << "|";
      } else {
        out << row.get<double>(i) << "|";
      }
    }
    out << "\n";
  }
  long long trips_sum = 0;
  long long invoice_sum = 0;
  sql << "SELECT SUM(fare_cents + distance_m + driver_id * 7 + passenger_id * 13) FROM trips",
      soci::into(trips_sum);
  sql << "SELECT SUM(amount_cents * status) FROM invoices", soci::into(invoice_sum);
  out << trips_sum << " " << invoice_sum;
  return out.str();
}

TEST(SeedingTest, GivesTheSameRowsOnEveryEngine) {
  STRANGLER_NEED_POSTGRES();
  Database sqlite("sqlite3");
  Database postgres("postgresql");
  ASSERT_TRUE(application::seedDemoData(sqlite.uow(), 200).seeded);
  ASSERT_TRUE(application::seedDemoData(postgres.uow(), 200).seeded);
  const auto a = dumpTables(sqlite.pool());
  const auto b = dumpTables(postgres.pool());
  EXPECT_GT(a.size(), 200u * 20);
  EXPECT_EQ(a, b);
}

}  // namespace
}  // namespace strangler::monolith::persistence
