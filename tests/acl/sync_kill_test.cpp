// The real `strangler sync` process SIGKILLed at many points, during the snapshot and while
// streaming under concurrent writes: every rerun resumes, and the end state is identical.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include <atomic>
#include <csignal>
#include <random>
#include <thread>

#include "strangler/testing/figures.h"
#include "strangler/testing/process.h"
#include "sync_fixture.h"

namespace strangler::acl::sync {
namespace {

using strangler::testing::ChildProcess;
using testing::TestDatabase;

class SyncKillTest : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    engine_ = GetParam().substr(0, GetParam().find('_'));
    if (GetParam() != engine_) capture_ = GetParam().substr(GetParam().find('_') + 1);
    if (engine_ == "postgresql") STRANGLER_NEED_POSTGRES();
    monolith_ = std::make_unique<TestDatabase>(engine_, dir_, "monolith");
    service_ = std::make_unique<TestDatabase>(engine_, dir_, "service");
    monolith_->seedMonolith(3000);
  }
  std::vector<std::string> args(const std::string& verb, const std::string& chunk = "25") const {
    return {"sync",           verb,      "--from", monolith_->conn(), "--to",
            service_->conn(), "--chunk", chunk,    "--capture",       capture_};
  }
  // Legacy writes the sync must not lose: moves and status changes of random drivers.
  void legacyWrites(std::mt19937& rng, int count) {
    auto sql = monolith_->session();
    for (int i = 0; i < count; ++i) {
      const long long id = 3001 + static_cast<long long>(rng() % 3000);
      const long long delta = static_cast<long long>(rng() % 1000);
      *sql << "UPDATE users SET lat_e6 = lat_e6 + :d, drv_status = :s, updated_at = updated_at + 1"
              " WHERE id = :id",
          soci::use(delta), soci::use(static_cast<int>(rng() % 2)), soci::use(id);
    }
  }

  std::string engine_;
  std::string capture_ = "auto";  // postgresql: logical (the default there); "_trigger": triggers
  strangler::testing::TempDir dir_;
  std::unique_ptr<TestDatabase> monolith_;
  std::unique_ptr<TestDatabase> service_;
};

TEST_P(SyncKillTest, KilledAnywhereItResumesToIdenticalData) {
  std::mt19937 rng(20251126);
  int killed = 0;
  int killed_in_snapshot_rounds = 0;
  int killed_mid_snapshot = 0;
  // During the snapshot, with writes landing between the kills: rounds go on until ten kills
  // have landed inside the snapshot (after a committed chunk, before its end), or it finished.
  bool snapshot_done = false;
  // A job needs a while to connect and create its tables (longer on PostgreSQL): a kill that
  // lands before its first chunk makes the next one wait longer.
  int delay_floor_ms = 20;
  for (int round = 0; round < 30 && killed_mid_snapshot < 10 && !snapshot_done; ++round) {
    // Small chunks: many commit points, so the kills land all over the snapshot.
    auto job = ChildProcess::start(STRANGLER_CLI_BIN, args("run", "1"));
    std::this_thread::sleep_for(std::chrono::milliseconds(delay_floor_ms + rng() % 60));
    if (!job->wait(std::chrono::milliseconds(0))) {
      job->signal(SIGKILL);
      ++killed;
      ++killed_in_snapshot_rounds;
    }
    snapshot_done = job->wait(std::chrono::seconds(10)) == 0;
    int mid_snapshot = 0;
    try {
      mid_snapshot =
          static_cast<int>(service_->scalar("SELECT COUNT(*) FROM strangler_sync_state WHERE phase "
                                            "= 'snapshot' AND rows_copied > 0"));
    } catch (const std::exception&) {
      // Killed before it created its tables: also a point worth surviving.
    }
    killed_mid_snapshot += mid_snapshot;
    if (mid_snapshot == 0 && !snapshot_done) delay_floor_ms += 40;
    legacyWrites(rng, 20);
  }
  // While streaming, with a writer running the whole time.
  std::atomic<bool> writing{true};
  std::thread writer([&] {
    std::mt19937 writer_rng(7);
    while (writing) {
      legacyWrites(writer_rng, 5);
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
  });
  for (int round = 0; round < 10; ++round) {
    auto job = ChildProcess::start(STRANGLER_CLI_BIN, args("watch"));
    std::this_thread::sleep_for(std::chrono::milliseconds(20 + rng() % 150));
    job->signal(SIGKILL);
    ++killed;
    job->wait(std::chrono::seconds(10));
  }
  writing = false;
  writer.join();
  EXPECT_GE(killed, 10);  // every watch round at least; snapshot rounds may finish first
  EXPECT_GE(killed_mid_snapshot, 1);  // the kills did land inside the snapshot

  auto final_run =
      strangler::testing::runCommand(STRANGLER_CLI_BIN, args("run"), std::chrono::seconds(120));
  ASSERT_EQ(final_run.exit_code, 0) << final_run.output;
  auto verify_args = args("verify");
  verify_args.push_back("--json");
  auto verify =
      strangler::testing::runCommand(STRANGLER_CLI_BIN, verify_args, std::chrono::seconds(120));
  EXPECT_EQ(verify.exit_code, 0) << verify.output;
  const auto report = nlohmann::json::parse(verify.output);
  EXPECT_TRUE(report["identical"].get<bool>()) << verify.output;
  EXPECT_EQ(report["source_rows"], 3000);
  EXPECT_EQ(report["target_rows"], 3000);
  EXPECT_EQ(service_->scalar("SELECT COUNT(DISTINCT id) FROM drivers"), 3000);
  EXPECT_EQ(service_->scalar("SELECT COUNT(*) FROM strangler_dead_letters"), 0);

  // The figures of the fault suite (RELIABILITY.md).
  const std::string engine = GetParam();  // the figure names carry the capture kind too
  const auto duplicates = service_->scalar("SELECT COUNT(*) - COUNT(DISTINCT id) FROM drivers");
  EXPECT_EQ(duplicates, 0);
  strangler::testing::reportFigure(
      "sync_kill." + engine + ".kills", killed, ">= 10",
      "SIGKILLs of `strangler sync`: " + std::to_string(killed_in_snapshot_rounds) +
          " in snapshot rounds (" + std::to_string(killed_mid_snapshot) +
          " inside the snapshot, after a committed chunk), 10 in watch rounds under writes");
  strangler::testing::reportFigure(
      "sync_kill." + engine + ".verify_differences",
      report["differing_ranges"].get<double>() +
          static_cast<double>(report["untranslatable"].size()),
      "0", "`strangler sync verify` differing key ranges after the resumed run");
  strangler::testing::reportFigure(
      "sync_kill." + engine + ".lost_rows",
      report["source_rows"].get<double>() - report["target_rows"].get<double>(), "0",
      "source rows minus service rows after the resumed run");
  strangler::testing::reportFigure("sync_kill." + engine + ".duplicates",
                                   static_cast<double>(duplicates), "0",
                                   "service rows sharing an id with another");
}

INSTANTIATE_TEST_SUITE_P(Engines, SyncKillTest,
                         ::testing::Values("sqlite3", "postgresql", "postgresql_trigger"),
                         [](const auto& param_info) { return param_info.param; });

}  // namespace
}  // namespace strangler::acl::sync
