// `sync verify --watch` against real databases: rounds under concurrent writes while a watch
// applies, a change the sync lost named by the next round, and a SIGKILLed verifier that leaves
// nothing behind that holds pruning (or WAL) back for longer than its registration's TTL.
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <csignal>
#include <mutex>
#include <random>
#include <set>
#include <thread>

#include "strangler/acl/sync_engine.h"
#include "strangler/testing/process.h"
#include "sync_fixture.h"

namespace strangler::acl::sync {
namespace {

using strangler::testing::ChildProcess;
using testing::TestDatabase;

constexpr int kDrivers = 500;  // seeded drivers have ids kDrivers + 1 … 2 * kDrivers

class VerifyWatchTest : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    const std::string& param = GetParam();
    engine_ = param.substr(0, param.find('_'));
    if (param != engine_) capture_ = param.substr(param.find('_') + 1);
    if (engine_ == "postgresql") STRANGLER_NEED_POSTGRES();
    monolith_ = std::make_unique<TestDatabase>(engine_, dir_, "monolith");
    service_ = std::make_unique<TestDatabase>(engine_, dir_, "service");
    monolith_->seedMonolith(kDrivers);
    sync_ = open();
    auto first = sync_->run();
    ASSERT_TRUE(first.ok()) << first.error().message;
  }
  void TearDown() override {
    stopWatch();
    stopWriters();
  }

  std::unique_ptr<SyncEngine> open() {
    SyncOptions options;
    options.capture = capture_;
    auto engine = SyncEngine::open(monolith_->conn(), service_->conn(), "drivers", options);
    EXPECT_TRUE(engine.ok()) << engine.error().message;
    return engine.ok() ? std::move(engine).value() : nullptr;
  }

  void startWatch() {
    watch_stop_ = false;
    watch_ = std::thread([this] {
      auto report = sync_->watch(watch_stop_, 20);
      EXPECT_TRUE(report.ok()) << report.error().message;
    });
  }
  void stopWatch() {
    watch_stop_ = true;
    if (watch_.joinable()) watch_.join();
  }

  // The legacy app: moves and status changes of random drivers, and now and then a new one;
  // `threads` writers, each pausing `pause_ms` between writes.
  void startWriters(int threads = 1, int pause_ms = 2) {
    writers_stop_ = false;
    for (int t = 0; t < threads; ++t) {
      writers_.emplace_back([this, t, pause_ms] {
        auto sql = monolith_->session();
        std::mt19937 rng(20260101 + t);
        long long next_id = 100000 + t * 1000000LL;
        while (!writers_stop_) {
          const long long id = kDrivers + 1 + static_cast<long long>(rng() % kDrivers);
          const long long delta = static_cast<long long>(rng() % 1000);
          const int status = static_cast<int>(rng() % 2);
          try {
            *sql << "UPDATE users SET lat_e6 = lat_e6 + :d, drv_status = :s, updated_at ="
                    " updated_at + 1 WHERE id = :id",
                soci::use(delta), soci::use(status), soci::use(id);
            touch(id);
            if (rng() % 20 == 0) {
              *sql << "INSERT INTO users (id, user_type, full_name, phone, car_plate, car_model,"
                      " drv_status, created_at, updated_at) VALUES (:id, 2, 'New', '+82-10-5',"
                      " 'P5', 'K5', 0, 1, 1)",
                  soci::use(next_id);
              touch(next_id);
              ++next_id;
            }
            ++writes_;
          } catch (const soci::soci_error&) {
            // A busy SQLite file: the next write goes on.
          }
          if (pause_ms > 0) std::this_thread::sleep_for(std::chrono::milliseconds(pause_ms));
        }
      });
    }
  }
  /// `count` more drivers (ids 50,000,001 on), in one statement.
  void addBulkDrivers(int count) {
    monolith_->exec(
        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < " +
        std::to_string(count) +
        ") INSERT INTO users (id, user_type, full_name, phone, car_plate, car_model, drv_status,"
        " created_at, updated_at) SELECT 50000000 + i, 2, 'Bulk', '+82-10-6', 'B6', 'K6', 0, 1, 1"
        " FROM n");
  }

  void touch(long long id) {
    std::lock_guard<std::mutex> lock(touched_mu_);
    touched_.insert(id);
  }
  void stopWriters() {
    writers_stop_ = true;
    for (auto& writer : writers_)
      writer.join();
    writers_.clear();
  }

  /// A change the sync lost: a service write (captured) whose reverse checkpoint is moved past
  /// it as if it had been applied, so the monolith never gets it. A real, lasting difference.
  void loseServiceChange(long long id) {
    service_->exec("UPDATE drivers SET name = 'Lost Change' WHERE id = " + std::to_string(id));
    std::string position;
    {
      auto sql = service_->session();
      if (engine_ == "sqlite3") {
        long long seq = 0;
        *sql << "SELECT MAX(seq) FROM strangler_changes", soci::into(seq);
        position = std::to_string(seq);
      } else {
        *sql << "SELECT pg_current_snapshot()::text", soci::into(position);
      }
    }
    monolith_->exec("UPDATE strangler_sync_state SET position = '" + position +
                    "', window_to = NULL WHERE mapping = 'drivers' AND direction = 'reverse'");
  }

  std::vector<std::string> cliArgs() const {
    return {"sync", "verify",         "--watch",   "--from", monolith_->conn(),
            "--to", service_->conn(), "--capture", capture_, "--interval",
            "0.2",  "--reader-ttl",   "2"};
  }

  std::string engine_;
  std::string capture_ = "auto";  // postgresql: logical (the default there); "_trigger": triggers
  strangler::testing::TempDir dir_;
  std::unique_ptr<TestDatabase> monolith_;
  std::unique_ptr<TestDatabase> service_;
  std::unique_ptr<SyncEngine> sync_;
  std::atomic<bool> watch_stop_{false};
  std::thread watch_;
  std::atomic<bool> writers_stop_{false};
  std::atomic<int64_t> writes_{0};
  std::vector<std::thread> writers_;
  std::mutex touched_mu_;
  std::set<int64_t> touched_;  // every driver a writer updated or inserted
};

TEST_P(VerifyWatchTest, RoundsAgreeUnderWritesThenNameTheKeyALostChangeLeftBehind) {
  auto verifier = open();
  ASSERT_TRUE(verifier);
  startWatch();
  startWriters();
  std::vector<WatchRound> rounds;
  constexpr long long kLost = kDrivers + 7;
  VerifyWatchOptions options;
  options.interval_ms = 300;
  options.rounds = 6;
  options.on_round = [&](const WatchRound& r) {
    rounds.push_back(r);
    if (r.round != 3) return;
    // Between rounds 3 and 4: the writes stop, the watch applies what is left and stops, a
    // change gets lost, and a watch runs again.
    stopWriters();
    stopWatch();
    ASSERT_TRUE(sync_->run().ok());
    loseServiceChange(kLost);
    startWatch();
  };
  std::atomic<bool> stop{false};
  auto last = verifier->verifyWatch(stop, options);
  ASSERT_TRUE(last.ok()) << last.error().message;
  ASSERT_EQ(rounds.size(), 7u);
  EXPECT_TRUE(rounds[0].full_pass);
  EXPECT_GT(writes_.load(), 100);
  int64_t rechecked = 0;
  for (int i = 0; i <= 3; ++i) {
    EXPECT_TRUE(rounds[i].report.identical())
        << "round " << i << ": " << rounds[i].differing << " differing, first "
        << (rounds[i].report.differing_keys.empty() ? -1 : rounds[i].report.differing_keys[0]);
    EXPECT_GE(rounds[i].report.source_rows, kDrivers);
    if (i > 0) rechecked += rounds[i].keys_rechecked;
  }
  // The rounds under writes did look at the changed keys.
  EXPECT_GT(rechecked, 10);
  for (int i = 4; i <= 6; ++i) {
    EXPECT_FALSE(rounds[i].report.identical()) << "round " << i;
    EXPECT_EQ(rounds[i].report.differing_keys, std::vector<int64_t>{kLost}) << "round " << i;
    EXPECT_EQ(rounds[i].differing, 1);
  }
  EXPECT_EQ(last->round, 6);
  // Rows the other side has equally many of, the lost one included.
  EXPECT_EQ(rounds[6].report.source_rows, rounds[6].report.target_rows);
}

// `sync verify` (one pass) while writers keep the sync busy: keys changed during the scan are lag
// (in flight), never differences, however many there are (a sync paused with hundreds of keys
// pending, then a running one); a change the sync really lost is still named, alone.
TEST_P(VerifyWatchTest, VerifyUnderWritesReportsLagNotDifferences) {
  auto verifier = open();
  ASSERT_TRUE(verifier);
  startWriters(3, 1);
  while (writes_ < 600)
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  auto paused = verifier->verify();
  ASSERT_TRUE(paused.ok()) << paused.error().message;
  EXPECT_TRUE(paused->identical()) << paused->differing_ranges << " ranges differ";
  EXPECT_GE(paused->in_flight.size(), 150u);
  startWatch();
  const int64_t before = writes_;
  for (int pass = 0; pass < 4; ++pass) {
    auto report = verifier->verify();
    ASSERT_TRUE(report.ok()) << report.error().message;
    EXPECT_TRUE(report->identical())
        << "pass " << pass << ": " << report->differing_ranges << " ranges differ, first key "
        << (report->differing_keys.empty() ? -1 : report->differing_keys[0]);
  }
  // The passes ran under writes.
  EXPECT_GT(writes_ - before, 100);
  stopWriters();
  stopWatch();
  ASSERT_TRUE(sync_->run().ok());
  auto settled = verifier->verify();
  ASSERT_TRUE(settled.ok()) << settled.error().message;
  EXPECT_TRUE(settled->identical());
  EXPECT_TRUE(settled->in_flight.empty());
  constexpr long long kLost = kDrivers + 11;
  loseServiceChange(kLost);
  auto lost = verifier->verify();
  ASSERT_TRUE(lost.ok()) << lost.error().message;
  EXPECT_FALSE(lost->identical());
  EXPECT_EQ(lost->differing_keys, std::vector<int64_t>{kLost});
}

// The verifier's slot read on between every two reads of the full pass (drain_every_ms 0; a long
// pass does it every 10 s): a key changed after the pass read it on both sides hashes equal, and
// only the change taken off the slot then says to read it again. With the sync stopped, every
// key written since it stopped is pending: the rounds after the writes stop must list exactly
// those as in flight, the ones written only during the pass included. 20,000 more rows make the
// pass long enough for writes to land in it. Trigger capture has no slot to drain.
TEST_P(VerifyWatchTest, SlotReadOnDuringTheFullPassMissesNoChange) {
  const bool logical = engine_ == "postgresql" && capture_ != "trigger";
  addBulkDrivers(20000);
  ASSERT_TRUE(sync_->run().ok());
  auto verifier = open();
  ASSERT_TRUE(verifier);
  startWriters(2, 1);
  std::vector<WatchRound> rounds;
  int64_t writes_during_pass = 0;
  VerifyWatchOptions options;
  options.interval_ms = 200;
  options.rounds = 3;
  options.drain_every_ms = 0;
  const int64_t before = writes_;
  options.on_round = [&](const WatchRound& r) {
    rounds.push_back(r);
    if (r.round != 0) return;
    writes_during_pass = writes_ - before;
    stopWriters();
  };
  std::atomic<bool> stop{false};
  auto last = verifier->verifyWatch(stop, options);
  ASSERT_TRUE(last.ok()) << last.error().message;
  ASSERT_EQ(rounds.size(), 4u);
  EXPECT_GT(writes_during_pass, 20);
  if (logical) {
    EXPECT_GE(rounds[0].drains, 2);
  } else {
    EXPECT_EQ(rounds[0].drains, 0);
  }
  const std::vector<int64_t> expected(touched_.begin(), touched_.end());
  for (std::size_t i = 1; i < rounds.size(); ++i) {
    EXPECT_EQ(rounds[i].differing, 0) << "round " << i;
    auto in_flight = rounds[i].report.in_flight;
    std::sort(in_flight.begin(), in_flight.end());
    EXPECT_EQ(in_flight.size(), expected.size()) << "round " << i;
    EXPECT_EQ(in_flight, expected) << "round " << i;
  }
  // The sync, run again, applies them all and the verifier agrees.
  ASSERT_TRUE(sync_->run().ok());
  auto settled = verifier->verify();
  ASSERT_TRUE(settled.ok()) << settled.error().message;
  EXPECT_TRUE(settled->identical());
}

// A full pass longer than the verifier's registration TTL (1 s here, 60 s by default) while the
// sync prunes all along: the registration on the service's change log is renewed during the
// scans, so the rounds after the pass follow the change streams instead of starting a full
// pass again (found at 10M rows, where every round became a full pass).
TEST_P(VerifyWatchTest, AFullPassLongerThanTheReaderTtlKeepsItsRegistration) {
  addBulkDrivers(150000);
  ASSERT_TRUE(sync_->run().ok());
  auto verifier = open();
  ASSERT_TRUE(verifier);
  std::atomic<bool> pruning{true};
  std::thread pruner([&] {
    // Each run applies what is pending and prunes (the watch would, every 5 s).
    while (pruning) {
      EXPECT_TRUE(sync_->run().ok());
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
  });
  startWriters(1, 5);
  std::vector<WatchRound> rounds;
  VerifyWatchOptions options;
  options.interval_ms = 200;
  options.rounds = 2;
  options.reader_ttl_s = 1;
  options.on_round = [&](const WatchRound& r) { rounds.push_back(r); };
  std::atomic<bool> stop{false};
  auto last = verifier->verifyWatch(stop, options);
  stopWriters();
  pruning = false;
  pruner.join();
  ASSERT_TRUE(last.ok()) << last.error().message;
  ASSERT_EQ(rounds.size(), 3u);
  EXPECT_GT(rounds[0].millis, 1000) << "the pass was not longer than the TTL: nothing tested";
  for (std::size_t i = 1; i < rounds.size(); ++i) {
    EXPECT_FALSE(rounds[i].full_pass) << "round " << i << ": " << rounds[i].note;
    EXPECT_TRUE(rounds[i].report.identical()) << "round " << i;
  }
}

TEST_P(VerifyWatchTest, RefusedDuringTheSnapshot) {
  auto fresh_service = std::make_unique<TestDatabase>(engine_, dir_, "fresh");
  SyncOptions options;
  options.capture = capture_;
  auto engine = SyncEngine::open(monolith_->conn(), fresh_service->conn(), "drivers", options);
  ASSERT_TRUE(engine.ok()) << engine.error().message;
  std::atomic<bool> stop{false};
  auto refused = (*engine)->verifyWatch(stop, {});
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.error().code, "not_streaming");
}

TEST_P(VerifyWatchTest, KilledVerifierHoldsNothingBackPastItsTtl) {
  auto job = ChildProcess::start(STRANGLER_CLI_BIN, cliArgs());
  ASSERT_TRUE(job->waitForLine("full pass", std::chrono::seconds(60))) << job->output();
  ASSERT_TRUE(job->waitForLine("round 2", std::chrono::seconds(30))) << job->output();
  const bool logical = engine_ == "postgresql" && capture_ != "trigger";
  const std::string slot_like =
      "SELECT COUNT(*) FROM pg_replication_slots WHERE slot_name LIKE 'strangler_verify_" +
      std::to_string(job->pid()) + "_%'";
  if (logical) {
    EXPECT_EQ(monolith_->scalar(slot_like), 1);
  }
  EXPECT_EQ(service_->scalar("SELECT COUNT(*) FROM strangler_readers"), 1);
  if (!logical) {
    EXPECT_EQ(monolith_->scalar("SELECT COUNT(*) FROM strangler_readers"), 1);
  }
  // Killed in the middle of whatever it does: changes are being written.
  startWriters();
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  job->signal(SIGKILL);
  job->wait(std::chrono::seconds(10));
  stopWriters();
  service_->exec("UPDATE drivers SET name = 'Service Side' WHERE id = " +
                 std::to_string(kDrivers + 3));
  // While its registration lives, the sync's prune keeps what the verifier has not read.
  ASSERT_TRUE(sync_->run().ok());
  EXPECT_GT(service_->scalar("SELECT COUNT(*) FROM strangler_changes"), 0);
  if (!logical) {
    EXPECT_GT(monolith_->scalar("SELECT COUNT(*) FROM strangler_changes"), 0);
  }
  if (logical) {
    // Its temporary slot went with its session.
    for (int i = 0; i < 100 && monolith_->scalar(slot_like) > 0; ++i)
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    EXPECT_EQ(monolith_->scalar(slot_like), 0);
  }
  // Past the TTL the registration goes with the next prune, and so does the backlog (SQLite
  // keeps the newest change row, so that its seq is never handed out again).
  std::this_thread::sleep_for(std::chrono::milliseconds(3200));
  ASSERT_TRUE(sync_->run().ok());
  const int64_t kept = engine_ == "sqlite3" ? 1 : 0;
  EXPECT_EQ(service_->scalar("SELECT COUNT(*) FROM strangler_readers"), 0);
  EXPECT_EQ(service_->scalar("SELECT COUNT(*) FROM strangler_changes"), kept);
  if (!logical) {
    EXPECT_EQ(monolith_->scalar("SELECT COUNT(*) FROM strangler_readers"), 0);
    EXPECT_EQ(monolith_->scalar("SELECT COUNT(*) FROM strangler_changes"), kept);
  }
  // The CLI verifier, run again for a few rounds, agrees.
  auto again = cliArgs();
  again.insert(again.end(), {"--rounds", "2"});
  const auto result = strangler::testing::runCommand(STRANGLER_CLI_BIN, again);
  EXPECT_EQ(result.exit_code, 0) << result.output;
  EXPECT_NE(result.output.find("round 2: identical"), std::string::npos) << result.output;
}

INSTANTIATE_TEST_SUITE_P(Engines, VerifyWatchTest,
                         ::testing::Values("sqlite3", "postgresql", "postgresql_trigger"),
                         [](const auto& param_info) { return param_info.param; });

}  // namespace
}  // namespace strangler::acl::sync
