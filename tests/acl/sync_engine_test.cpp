// The sync engine in process, against real databases in every engine combination.
#include "strangler/acl/sync_engine.h"

#include <gtest/gtest.h>

#include <atomic>
#include <thread>

#include "sync_fixture.h"

namespace strangler::acl::sync {
namespace {

using testing::TestDatabase;

class SyncEngineTest : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    auto [from, to] = testing::enginePair(GetParam());
    // "postgresql+trigger": a PostgreSQL monolith captured by triggers (logical is the default
    // where the server allows it).
    SyncOptions options;
    if (const auto plus = from.find('+'); plus != std::string::npos) {
      options.capture = from.substr(plus + 1);
      from = from.substr(0, plus);
    }
    if (from == "postgresql" || to == "postgresql") STRANGLER_NEED_POSTGRES();
    monolith_ = std::make_unique<TestDatabase>(from, dir_, "monolith");
    service_ = std::make_unique<TestDatabase>(to, dir_, "service");
    monolith_->seedMonolith(300);
    options.chunk_rows = 64;  // many chunks even for a small table
    auto engine = SyncEngine::open(monolith_->conn(), service_->conn(), "drivers", options);
    ASSERT_TRUE(engine.ok()) << engine.error().message;
    engine_ = std::move(engine.value());
  }

  VerifyReport verified() {
    auto report = engine_->verify();
    EXPECT_TRUE(report.ok()) << report.error().message;
    return report.ok() ? report.value() : VerifyReport{};
  }

  RunReport ran() {
    auto report = engine_->run();
    EXPECT_TRUE(report.ok()) << report.error().message;
    return report.ok() ? report.value() : RunReport{};
  }

  strangler::testing::TempDir dir_;
  std::unique_ptr<TestDatabase> monolith_;
  std::unique_ptr<TestDatabase> service_;
  std::unique_ptr<SyncEngine> engine_;
};

TEST_P(SyncEngineTest, SnapshotThenCapturedChangesEndIdentical) {
  // Text that bulk paths must quote right: quotes, backslashes, braces, commas, "NULL", UTF-8.
  monolith_->exec(
      R"sql(UPDATE users SET full_name = 'O''Brien "Q" \ {a,b} NULL 김', car_plate = '' WHERE id = 305)sql");
  auto first = ran();
  EXPECT_EQ(first.snapshot_rows, 300);
  EXPECT_EQ(service_->scalar("SELECT COUNT(*) FROM drivers"), 300);
  EXPECT_TRUE(verified().identical());
  {
    auto sql = service_->session();
    std::string name, plate;
    *sql << "SELECT name, vehicle_plate FROM drivers WHERE id = 305", soci::into(name),
        soci::into(plate);
    EXPECT_EQ(name, R"(O'Brien "Q" \ {a,b} NULL 김)");
    EXPECT_EQ(plate, "");
  }

  // The legacy app keeps writing: updates, a new driver, a deleted one, a passenger (ignored).
  monolith_->exec(
      "UPDATE users SET lat_e6 = lat_e6 + 1000, updated_at = updated_at + 1"
      " WHERE user_type = 2 AND id % 7 = 0");
  monolith_->exec(
      "INSERT INTO users (id, user_type, full_name, phone, car_plate, car_model,"
      " drv_status, created_at, updated_at) VALUES (5000, 2, 'Late Joiner', '+82-10-1',"
      " 'P1', 'K5', 0, 1, 1)");
  monolith_->exec(
      "INSERT INTO users (id, user_type, full_name, phone, car_plate, car_model,"
      " drv_status, created_at, updated_at) VALUES (5001, 2, 'Short Stay', '+82-10-2',"
      " 'P2', 'K5', 0, 1, 1)");
  monolith_->exec("DELETE FROM users WHERE id = 5001");
  monolith_->exec(
      "INSERT INTO users (id, user_type, full_name, phone, created_at, updated_at)"
      " VALUES (5002, 1, 'Rider', '+82-10-3', 1, 1)");
  auto status = engine_->status();
  ASSERT_TRUE(status.ok());
  EXPECT_GT(status->pending_changes, 40);
  EXPECT_TRUE(status->oldest_pending_age_s.has_value());
  // Keys whose changes are not applied yet are lag, not differences.
  const auto lagging = verified();
  EXPECT_GE(lagging.in_flight.size(), 40u);
  EXPECT_TRUE(lagging.differing_keys.empty());

  auto second = ran();
  EXPECT_EQ(second.snapshot_rows, 0);
  EXPECT_GT(second.changes_applied, 40);
  const auto report = verified();
  EXPECT_TRUE(report.identical()) << report.differing_ranges;
  EXPECT_EQ(report.source_rows, 301);
  EXPECT_EQ(service_->scalar("SELECT COUNT(*) FROM drivers WHERE id IN (5000, 5001, 5002)"), 1);
  EXPECT_EQ(engine_->status()->pending_changes, 0);
  // Running again changes nothing.
  EXPECT_EQ(ran().changes_applied, 0);
}

TEST_P(SyncEngineTest, UntranslatableRowIsQuarantinedThenHealed) {
  monolith_->exec("UPDATE users SET drv_status = 9 WHERE id = 350");
  auto report = ran();
  EXPECT_EQ(report.dead_letters, 1);
  EXPECT_EQ(service_->scalar("SELECT COUNT(*) FROM drivers"), 299);
  EXPECT_EQ(service_->scalar("SELECT COUNT(*) FROM strangler_dead_letters WHERE pk = 350"), 1);
  auto check = verified();
  EXPECT_FALSE(check.identical());
  ASSERT_EQ(check.untranslatable.size(), 1u);
  EXPECT_NE(check.untranslatable[0].find("users.drv_status = 9"), std::string::npos);
  EXPECT_EQ(check.differing_keys, std::vector<int64_t>{350});
  EXPECT_EQ(engine_->status()->dead_letters, 1);

  monolith_->exec("UPDATE users SET drv_status = 1 WHERE id = 350");
  ran();
  EXPECT_TRUE(verified().identical());
  EXPECT_EQ(service_->scalar("SELECT COUNT(*) FROM strangler_dead_letters"), 0);
}

TEST_P(SyncEngineTest, FlipSendsServiceWritesBackWithoutEcho) {
  ran();
  auto flipped = engine_->flip(false);
  ASSERT_TRUE(flipped.ok()) << flipped.error().message;
  EXPECT_EQ(*flipped, Direction::kReverse);
  EXPECT_FALSE(engine_->flip(false).ok());  // already owned by the service

  // The service now owns driver writes: a move, and a driver registered there.
  service_->exec("UPDATE drivers SET lat = 37.5, lng = 127.1, updated_at = 2 WHERE id = 320");
  service_->exec(
      "INSERT INTO drivers (name, phone, vehicle_plate, vehicle_model, status,"
      " created_at, updated_at) VALUES ('New There', '+82-10-4', 'P9', 'Niro',"
      " 'available', 3, 3)");
  auto back = ran();
  EXPECT_EQ(back.direction, Direction::kReverse);
  EXPECT_EQ(back.reverse_applied, 2);
  EXPECT_EQ(back.changes_applied, 0);  // nothing echoed back to the service
  // The monolith's dispatch reads the location written through the service.
  EXPECT_EQ(monolith_->scalar("SELECT lat_e6 FROM users WHERE id = 320"), 37500000);
  // The driver registered there is in the monolith too: under the service's id where the
  // monolith allocates from a sequence (shared keys), else under an id of the monolith's own.
  EXPECT_EQ(monolith_->scalar("SELECT COUNT(*) FROM users WHERE full_name = 'New There'"), 1);
  const bool mapped = engine_->status()->key_mode == "mapped";
  EXPECT_EQ(mapped, monolith_->engine() == "sqlite3");
  EXPECT_EQ(monolith_->scalar("SELECT COUNT(*) FROM users WHERE id >= 1000000000000"),
            mapped ? 0 : 1);
  EXPECT_TRUE(verified().identical());
  // The sync's own writes are never captured, so they cannot echo.
  EXPECT_EQ(monolith_->scalar("SELECT COUNT(*) FROM strangler_changes WHERE origin = 'sync'"), 0);

  auto home = engine_->flip(true);
  ASSERT_TRUE(home.ok()) << home.error().message;
  EXPECT_EQ(*home, Direction::kForward);
  auto forward = ran();
  EXPECT_EQ(forward.changes_applied, 0);
  EXPECT_TRUE(verified().identical());
}

TEST_P(SyncEngineTest, MonolithWritesAfterTheFlipReachTheService) {
  ran();
  ASSERT_TRUE(engine_->flip(false).ok());
  // The monolith's own features still write the rows the service owns (dispatch sets a status).
  monolith_->exec("UPDATE users SET drv_status = 2, updated_at = 7 WHERE id = 301");
  auto report = ran();
  EXPECT_EQ(report.changes_applied, 1);
  EXPECT_EQ(service_->scalar("SELECT COUNT(*) FROM drivers WHERE id = 301 AND status = 'on_trip'"),
            1);
  EXPECT_TRUE(verified().identical());
}

// The monolith allocates its own keys (SQLite's rowid; on PostgreSQL, a key column without a
// sequence, as an application computing MAX + 1 has): rows the service creates get a key of the
// monolith's own there, and every later change on either side finds its row through the map.
TEST_P(SyncEngineTest, RowsTheServiceCreatesGetTheMonolithsOwnKeys) {
  if (monolith_->engine() != "sqlite3") {
    engine_.reset();
    monolith_->exec("ALTER TABLE users ALTER COLUMN id DROP DEFAULT");
    auto engine = SyncEngine::open(monolith_->conn(), service_->conn(), "drivers");
    ASSERT_TRUE(engine.ok()) << engine.error().message;
    engine_ = std::move(engine.value());
  }
  EXPECT_EQ(engine_->status()->key_mode, "mapped");
  ran();
  ASSERT_TRUE(engine_->flip(false).ok());
  const auto register_driver = [&](const std::string& name) {
    service_->exec(
        "INSERT INTO drivers (name, phone, vehicle_plate, vehicle_model, status, created_at,"
        " updated_at) VALUES ('" +
        name + "', '+82-10-5', 'P1', 'Ioniq', 'available', 4, 4)");
  };
  register_driver("First There");
  register_driver("Second There");
  ran();
  const int64_t first_s = service_->scalar("SELECT id FROM drivers WHERE name = 'First There'");
  const int64_t first_m = monolith_->scalar("SELECT id FROM users WHERE full_name = 'First There'");
  EXPECT_GE(first_s, 1000000000000);
  EXPECT_LT(first_m, 1000000000000);  // the monolith's allocator never left its own range
  EXPECT_GT(first_m, 300);
  EXPECT_EQ(engine_->status()->mapped_keys, 2);
  EXPECT_TRUE(verified().identical());

  // The monolith's own features write the row under its key; the service's row follows.
  monolith_->exec("UPDATE users SET drv_status = 2, updated_at = 8 WHERE id = " +
                  std::to_string(first_m));
  ran();
  EXPECT_EQ(service_->scalar("SELECT COUNT(*) FROM drivers WHERE id = " + std::to_string(first_s) +
                             " AND status = 'on_trip'"),
            1);
  // And the service's writes reach the monolith's row.
  service_->exec("UPDATE drivers SET lat = 2.5, updated_at = 9 WHERE id = " +
                 std::to_string(first_s));
  ran();
  EXPECT_EQ(monolith_->scalar("SELECT lat_e6 FROM users WHERE id = " + std::to_string(first_m)),
            2500000);
  EXPECT_TRUE(verified().identical());

  // verify --watch compares under the service's keys too: a full pass, then a round over the
  // keys changed since, one of them a paired row changed on the monolith.
  VerifyWatchOptions watch;
  watch.interval_ms = 50;
  watch.rounds = 1;
  std::vector<WatchRound> rounds;
  watch.on_round = [&](const WatchRound& r) {
    rounds.push_back(r);
    if (r.round != 0) return;
    monolith_->exec("UPDATE users SET drv_status = 0, updated_at = 11 WHERE id = " +
                    std::to_string(first_m));
    ran();
  };
  std::atomic<bool> stop{false};
  auto watched = engine_->verifyWatch(stop, watch);
  ASSERT_TRUE(watched.ok()) << watched.error().message;
  ASSERT_EQ(rounds.size(), 2u);
  for (const auto& r : rounds)
    EXPECT_TRUE(r.report.identical())
        << "round " << r.round << ": first differing "
        << (r.report.differing_keys.empty() ? -1 : r.report.differing_keys[0]);
  EXPECT_GE(rounds[1].keys_rechecked, 1);
  EXPECT_EQ(rounds[1].report.source_rows, rounds[1].report.target_rows);

  // A driver the monolith registers meanwhile takes the next key of its own, with no collision.
  monolith_->exec(
      "INSERT INTO users (id, user_type, full_name, phone, car_plate, car_model, drv_status,"
      " created_at, updated_at) VALUES ((SELECT MAX(id) + 1 FROM users), 2, 'Signed Up Here',"
      " '+82-10-6', 'P2', 'Niro', 0, 5, 5)");
  ran();
  EXPECT_EQ(service_->scalar("SELECT COUNT(*) FROM drivers WHERE name = 'Signed Up Here' AND id < "
                             "1000000000000"),
            1);

  // Deleted on the service: gone from the monolith, and from the map.
  service_->exec("DELETE FROM drivers WHERE id = " + std::to_string(first_s));
  ran();
  EXPECT_EQ(monolith_->scalar("SELECT COUNT(*) FROM users WHERE id = " + std::to_string(first_m)),
            0);
  EXPECT_EQ(engine_->status()->mapped_keys, 1);
  EXPECT_TRUE(verified().identical());

  // Back to the monolith: its own writes to the service-born row still reach the service.
  ASSERT_TRUE(engine_->flip(true).ok());
  monolith_->exec(
      "UPDATE users SET drv_status = 2, updated_at = 10 WHERE full_name = "
      "'Second There'");
  ran();
  EXPECT_EQ(service_->scalar("SELECT COUNT(*) FROM drivers WHERE name = 'Second There' AND status"
                             " = 'on_trip' AND id >= 1000000000000"),
            1);
  EXPECT_TRUE(verified().identical());
}

TEST_P(SyncEngineTest, BothSidesChangingDifferentColumnsKeepBothWrites) {
  ran();
  for (bool flipped : {false, true}) {
    if (flipped) {
      ASSERT_TRUE(engine_->flip(false).ok());
    }
    const int id = flipped ? 312 : 311;
    monolith_->exec("UPDATE users SET drv_status = 2 WHERE id = " + std::to_string(id));
    service_->exec("UPDATE drivers SET lat = 36.25 WHERE id = " + std::to_string(id));
    auto report = ran();
    EXPECT_EQ(report.conflicts, 0);
    EXPECT_EQ(monolith_->scalar("SELECT lat_e6 FROM users WHERE id = " + std::to_string(id)),
              36250000);
    EXPECT_EQ(service_->scalar("SELECT COUNT(*) FROM drivers WHERE status = 'on_trip' AND id = " +
                               std::to_string(id)),
              1);
    EXPECT_TRUE(verified().identical());
  }
}

TEST_P(SyncEngineTest, SameColumnChangedOnBothSidesTheOwnerWins) {
  ran();
  // Before the flip the monolith owns the rows; after it, the service.
  monolith_->exec("UPDATE users SET drv_status = 0 WHERE id = 321");
  service_->exec("UPDATE drivers SET status = 'on_trip' WHERE id = 321");
  ran();  // the owner's stream ran first here: its value was copied over, no conflict to skip
  EXPECT_EQ(service_->scalar("SELECT COUNT(*) FROM drivers WHERE id = 321 AND status = 'offline'"),
            1);
  EXPECT_TRUE(verified().identical());

  ASSERT_TRUE(engine_->flip(false).ok());
  monolith_->exec("UPDATE users SET drv_status = 0 WHERE id = 322");
  service_->exec("UPDATE drivers SET status = 'on_trip' WHERE id = 322");
  auto after = ran();
  EXPECT_GE(after.conflicts, 1);  // the monolith's stream ran first and skipped the column
  EXPECT_EQ(monolith_->scalar("SELECT drv_status FROM users WHERE id = 322"), 2);
  EXPECT_TRUE(verified().identical());
}

TEST_P(SyncEngineTest, FlipIsRefusedWhileSidesDiffer) {
  ran();
  monolith_->exec("UPDATE users SET drv_status = 9 WHERE id = 310");  // becomes a dead letter
  auto flipped = engine_->flip(false);
  ASSERT_FALSE(flipped.ok());
  EXPECT_EQ(flipped.error().code, "refused");
  EXPECT_NE(flipped.error().message.find("differ"), std::string::npos);
}

TEST_P(SyncEngineTest, ServiceWritesBeforeTheFlipNeedNoForce) {
  ran();
  // The route was extracted before the flip: the service took a write of its own.
  service_->exec("UPDATE drivers SET lat = 1.5, updated_at = 9 WHERE id = 330");
  auto flipped = engine_->flip(false);
  ASSERT_TRUE(flipped.ok()) << flipped.error().message;
  EXPECT_EQ(monolith_->scalar("SELECT lat_e6 FROM users WHERE id = 330"), 1500000);
  EXPECT_TRUE(verified().identical());
}

TEST_P(SyncEngineTest, ForcedFlipCopiesTheServiceRowsOver) {
  ran();
  monolith_->exec("UPDATE users SET drv_status = 9 WHERE id = 310");  // untranslatable
  ran();
  auto forced = engine_->flip(false, true);
  ASSERT_TRUE(forced.ok()) << forced.error().message;
  EXPECT_EQ(monolith_->scalar("SELECT drv_status FROM users WHERE id = 310"), 1);
}

TEST_P(SyncEngineTest, OnlyOneProcessAppliesAtATime) {
  ran();
  std::atomic<bool> stop{false};
  std::thread watcher([&] {
    SyncOptions options;
    options.lease_holder = "watcher-under-test";
    auto other = SyncEngine::open(monolith_->conn(), service_->conn(), "drivers", options);
    ASSERT_TRUE(other.ok());
    auto watched = (*other)->watch(stop, 20);
    EXPECT_TRUE(watched.ok()) << watched.error().message;
  });
  // Wait until the watcher holds the lease.
  for (int i = 0; i < 200; ++i) {
    auto lease = engine_->lease();
    ASSERT_TRUE(lease.ok());
    if (lease->has_value()) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  auto refused = engine_->run();
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.error().code, "lease_held");
  EXPECT_NE(refused.error().message.find("watcher-under-test"), std::string::npos);
  // A flip coordinates with the running watch: it waits for it to apply, then flips.
  monolith_->exec("UPDATE users SET drv_status = 2 WHERE id = 340");
  auto flipped = engine_->flip(false);
  ASSERT_TRUE(flipped.ok()) << flipped.error().message;
  EXPECT_EQ(service_->scalar("SELECT COUNT(*) FROM drivers WHERE id = 340 AND status = 'on_trip'"),
            1);
  stop = true;
  watcher.join();
  EXPECT_FALSE(engine_->lease()->has_value());  // released on exit
  EXPECT_TRUE(ran().reverse_applied >= 0);
  EXPECT_TRUE(verified().identical());
}

TEST_P(SyncEngineTest, BacklogDrainsToAFence) {
  ran();
  monolith_->exec("UPDATE users SET drv_status = 2 WHERE id IN (350, 351, 352)");
  service_->exec("UPDATE drivers SET lat = 35.5 WHERE id = 353");
  auto fence = engine_->positions();
  ASSERT_TRUE(fence.ok());
  auto before = engine_->backlog(*fence);
  ASSERT_TRUE(before.ok());
  EXPECT_EQ(before->forward, 3);
  EXPECT_EQ(before->reverse, 1);
  ran();
  auto after = engine_->backlog(*fence);
  ASSERT_TRUE(after.ok());
  EXPECT_TRUE(after->empty());
}

TEST_P(SyncEngineTest, UninstallRemovesCaptureFromBothSides) {
  ran();
  auto removed = engine_->uninstall();
  ASSERT_TRUE(removed.ok()) << removed.error().message;
  EXPECT_FALSE(removed->empty());
  monolith_->exec("UPDATE users SET drv_status = 2 WHERE id = 360");
  const bool sqlite = monolith_->conn().rfind("sqlite3", 0) == 0;
  EXPECT_EQ(monolith_->scalar(sqlite ? "SELECT COUNT(*) FROM sqlite_master WHERE type = 'trigger'"
                                     : "SELECT COUNT(*) FROM pg_trigger t JOIN pg_class c ON"
                                       " c.oid = t.tgrelid WHERE c.relnamespace ="
                                       " current_schema()::regnamespace AND t.tgname LIKE"
                                       " 'strangler%'"),
            0);
}

INSTANTIATE_TEST_SUITE_P(Engines, SyncEngineTest,
                         ::testing::Values("sqlite3/sqlite3", "postgresql/postgresql",
                                           "sqlite3/postgresql", "postgresql/sqlite3",
                                           "postgresql+trigger/postgresql"),
                         [](const auto& param_info) {
                           auto name = param_info.param;
                           name.replace(name.find('/'), 1, "_to_");
                           if (const auto plus = name.find('+'); plus != std::string::npos)
                             name[plus] = '_';
                           return name;
                         });

// Logical capture reads PostgreSQL's WAL through a slot: no trigger, no change row in the
// monolith; a dropped slot is a clear error with the way back.
TEST(LogicalCaptureTest, AddsNothingToTheMonolithsWritesAndSaysWhenTheSlotIsGone) {
  STRANGLER_NEED_POSTGRES();
  strangler::testing::TempDir dir;
  TestDatabase monolith("postgresql", dir, "monolith");
  TestDatabase service("postgresql", dir, "service");
  if (monolith.scalar("SELECT COUNT(*) FROM pg_settings WHERE name = 'wal_level' AND setting = "
                      "'logical'") == 0) {
    if (strangler::testing::postgresRequired())
      FAIL() << "the test server must run with wal_level=logical";
    GTEST_SKIP() << "the server runs without wal_level=logical";
  }
  monolith.seedMonolith(100);
  SyncOptions options;
  options.capture = "logical";
  auto engine = SyncEngine::open(monolith.conn(), service.conn(), "drivers", options);
  ASSERT_TRUE(engine.ok()) << engine.error().message;
  ASSERT_TRUE((*engine)->run().ok());
  EXPECT_EQ((*engine)->status()->capture, "logical");
  monolith.exec("UPDATE users SET lat_e6 = lat_e6 + 5 WHERE user_type = 2 AND id % 3 = 0");
  monolith.exec("UPDATE users SET email = 'x@y' WHERE user_type = 1");  // not a driver
  monolith.exec(
      "INSERT INTO users (id, user_type, full_name, phone, car_plate, car_model, drv_status,"
      " created_at, updated_at) VALUES (5001, 2, 'Short Stay', '+82-10-2', 'P2', 'K5', 0, 1, 1)");
  monolith.exec("DELETE FROM users WHERE id = 5001");
  EXPECT_EQ(monolith.scalar("SELECT COUNT(*) FROM pg_trigger t JOIN pg_class c ON c.oid ="
                            " t.tgrelid WHERE c.relnamespace = current_schema()::regnamespace"
                            " AND NOT t.tgisinternal"),
            0);
  EXPECT_EQ(monolith.scalar("SELECT COUNT(*) FROM strangler_changes"), 0);
  auto status = (*engine)->status();
  ASSERT_TRUE(status.ok());
  EXPECT_EQ(status->pending_changes, 35);  // 33 moved drivers, one inserted and deleted
  ASSERT_TRUE(status->slot_lag_bytes.has_value());
  EXPECT_GT(*status->slot_lag_bytes, 0);
  auto applied = (*engine)->run();
  ASSERT_TRUE(applied.ok()) << applied.error().message;
  EXPECT_EQ(applied->changes_applied, 34);
  EXPECT_TRUE((*engine)->verify()->identical());
  EXPECT_EQ((*engine)->status()->pending_changes, 0);

  // The slot dropped behind the sync's back (or invalidated): a clear error, then the way back.
  monolith.exec(
      "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE"
      " slot_name LIKE 'strangler_drivers_' || current_schema()");
  auto broken = (*engine)->run();
  ASSERT_FALSE(broken.ok());
  EXPECT_NE(broken.error().message.find("sync uninstall"), std::string::npos)
      << broken.error().message;
  auto removed = (*engine)->uninstall();
  ASSERT_TRUE(removed.ok()) << removed.error().message;
  auto again = SyncEngine::open(monolith.conn(), service.conn(), "drivers", options);
  ASSERT_TRUE(again.ok());
  auto recopied = (*again)->run();
  ASSERT_TRUE(recopied.ok()) << recopied.error().message;
  EXPECT_EQ(recopied->snapshot_rows, 100);
  EXPECT_TRUE((*again)->verify()->identical());
  ASSERT_TRUE((*again)->uninstall().ok());
  EXPECT_EQ(monolith.scalar("SELECT COUNT(*) FROM pg_replication_slots WHERE slot_name LIKE"
                            " 'strangler_drivers_' || current_schema()"),
            0);
}

TEST(SyncEngineOpenTest, RefusesBeforeAnyWrite) {
  strangler::testing::TempDir dir;
  const std::string empty_monolith = "sqlite3://db=" + dir.file("empty.db");
  const std::string service = "sqlite3://db=" + dir.file("service.db");
  auto missing = SyncEngine::open(empty_monolith, service, "drivers");
  ASSERT_FALSE(missing.ok());
  EXPECT_EQ(missing.error().code, "missing_table");
  EXPECT_NE(missing.error().message.find("users"), std::string::npos);
  {
    TestDatabase svc("sqlite3", dir, "service");
    EXPECT_EQ(svc.scalar("SELECT COUNT(*) FROM sqlite_master"), 0);  // nothing was written
  }
  auto bad = SyncEngine::open("mysql://x", service, "drivers");
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.error().code, "usage");
  auto unknown_mapping = SyncEngine::open(empty_monolith, service, "no-such-mapping");
  ASSERT_FALSE(unknown_mapping.ok());
  EXPECT_EQ(unknown_mapping.error().code, "invalid_mapping");
}

}  // namespace
}  // namespace strangler::acl::sync
