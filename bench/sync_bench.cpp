// Sync benchmark: snapshot throughput of the sync engine vs the database copying the same rows
// with the same translation in SQL (INSERT … SELECT), and change-apply lag under a steady load.
// Prints each figure next to its anchor from the same run. Not part of ctest.
//
//   build/bench/sync_bench [ROWS] [LAG_SECONDS]       (STRANGLER_PG_DSN set: PostgreSQL too)
//   CAPTURE=trigger|logical|auto (default auto), CHUNK=rows per snapshot chunk (default 5000)
#include <soci/postgresql/soci-postgresql.h>
#include <soci/soci.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <iostream>
#include <random>
#include <thread>
#include <vector>

#include "bench_db.h"
#include "strangler/acl/sync_engine.h"
#include "strangler/common/db.h"

namespace {

using Clock = std::chrono::steady_clock;
namespace sync = strangler::acl::sync;
namespace common = strangler::common;
using strangler::bench::dropBenchSlots;
using strangler::bench::fillMonolith;
using strangler::bench::openDb;

double secondsSince(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

long long nowMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

// The anchor: the same copy and translation done by the database in one statement.
double anchorCopy(const std::string& monolith, const std::string& anchor_target, bool sqlite) {
  auto sql = openDb(monolith);
  std::string target_table = "anchor_drivers";
  if (sqlite) {
    *sql << "ATTACH DATABASE '" + anchor_target + "' AS anchor";
    target_table = "anchor.drivers";
  }
  const std::string real = sqlite ? "REAL" : "DOUBLE PRECISION";
  *sql << "CREATE TABLE " + target_table +
              " (id BIGINT PRIMARY KEY, name TEXT NOT NULL, phone TEXT NOT NULL,"
              " vehicle_plate TEXT NOT NULL, vehicle_model TEXT NOT NULL, status TEXT NOT NULL, "
              "lat " +
              real + ", lng " + real +
              ", location_updated_at BIGINT, created_at BIGINT NOT NULL, updated_at BIGINT NOT "
              "NULL)";
  const auto start = Clock::now();
  *sql << "INSERT INTO " + target_table +
              " SELECT id, full_name, phone, COALESCE(car_plate, ''),"
              " COALESCE(car_model, ''), CASE COALESCE(drv_status, 0) WHEN 0 THEN 'offline' WHEN 1 "
              "THEN"
              " 'available' WHEN 2 THEN 'on_trip' END, lat_e6 / 1000000.0, lng_e6 / 1000000.0,"
              " loc_updated_at, created_at, updated_at FROM users WHERE user_type = 2";
  return secondsSince(start);
}

struct LagFigures {
  double applied_per_s = 0;
  long long p50_ms = 0, p99_ms = 0, max_ms = 0;
};

// A writer moves drivers at `rate` changes/s (batches every 10 ms) while the engine watches;
// a probe samples how far the service lags behind the newest write.
LagFigures measureLag(sync::SyncEngine& engine, const std::string& monolith,
                      const std::string& service, long long rows, int rate, int seconds) {
  std::atomic<bool> stop{false};
  std::atomic<bool> watch_stop{false};
  std::thread watcher([&] { (void)engine.watch(watch_stop, 20); });
  std::atomic<long long> written{0};
  std::thread writer([&] {
    auto sql = openDb(monolith);
    std::mt19937_64 rng(1);
    const int per_batch = rate / 100;
    auto next = Clock::now();
    while (!stop) {
      const long long stamp = nowMs();
      common::Transaction tx(*sql, common::parseConnectionString(monolith)->backend,
                             common::Transaction::Mode::kWrite);
      for (int i = 0; i < per_batch; ++i) {
        const long long id = 1 + static_cast<long long>(rng() % rows);
        *sql << "UPDATE users SET loc_updated_at = :t WHERE id = :id", soci::use(stamp),
            soci::use(id);
      }
      tx.commit();
      written += per_batch;
      next += std::chrono::milliseconds(10);
      std::this_thread::sleep_until(next);
    }
  });
  std::vector<long long> lags;
  const long long load_start_ms = nowMs();
  auto probe = openDb(service);
  // The probe reads the newest write often; an index keeps it from scanning the table each time.
  *probe << "CREATE INDEX IF NOT EXISTS bench_drivers_lu ON drivers (location_updated_at)";
  const auto start = Clock::now();
  while (secondsSince(start) < seconds) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    long long newest = 0;
    *probe << "SELECT MAX(location_updated_at) FROM drivers", soci::into(newest);
    // Before the first write arrives, every write since the load began is missing.
    if (secondsSince(start) > 1)
      lags.push_back(std::max(0LL, nowMs() - std::max(newest, load_start_ms)));
  }
  stop = true;
  writer.join();
  watch_stop = true;
  watcher.join();
  std::sort(lags.begin(), lags.end());
  LagFigures f;
  f.applied_per_s = static_cast<double>(written) / secondsSince(start);
  if (!lags.empty()) {
    f.p50_ms = lags[lags.size() / 2];
    f.p99_ms = lags[lags.size() * 99 / 100];
    f.max_ms = lags.back();
  }
  return f;
}

void runEngine(const std::string& label, const std::string& monolith, const std::string& service,
               const std::string& anchor_target, long long rows, int lag_seconds) {
  const bool sqlite = monolith.rfind("sqlite", 0) == 0;
  fillMonolith(monolith, rows);
  const double anchor_s = anchorCopy(monolith, anchor_target, sqlite);
  sync::SyncOptions options;
  options.chunk_rows = std::getenv("CHUNK") ? std::atoll(std::getenv("CHUNK")) : 5000;
  // SQLite has trigger capture only.
  if (const char* capture = std::getenv("CAPTURE"); capture != nullptr && !sqlite)
    options.capture = capture;
  auto opened = sync::SyncEngine::open(monolith, service, "drivers", options);
  if (!opened.ok()) {
    std::cerr << "open failed: " << opened.error().message << "\n";
    std::exit(1);
  }
  auto engine = std::move(opened.value());
  const auto start = Clock::now();
  auto report = engine->run();
  const double ours_s = secondsSince(start);
  if (!report.ok()) {
    std::cerr << "sync failed: " << report.error().message << "\n";
    std::exit(1);
  }
  const double anchor_rate = rows / anchor_s;
  const double ours_rate = report->snapshot_rows / ours_s;
  std::printf(
      "%-10s snapshot %lld rows: sync %.0f rows/s (%.2f s) | INSERT…SELECT %.0f rows/s (%.2f s) | "
      "ratio %.2f\n",
      label.c_str(), rows, ours_rate, ours_s, anchor_rate, anchor_s, ours_rate / anchor_rate);
  const auto status = engine->status();
  const std::string capture = status.ok() ? status->capture : "?";
  const auto lag = measureLag(*engine, monolith, service, rows, 5000, lag_seconds);
  std::printf(
      "%-10s lag (%s capture) at %.0f changes/s for %d s: p50 %lld ms, p99 %lld ms, max %lld ms\n",
      label.c_str(), capture.c_str(), lag.applied_per_s, lag_seconds, lag.p50_ms, lag.p99_ms,
      lag.max_ms);
}

}  // namespace

int main(int argc, char** argv) {
  const long long rows = argc > 1 ? std::atoll(argv[1]) : 1000000;
  const int lag_seconds = argc > 2 ? std::atoi(argv[2]) : 10;
  const auto dir =
      std::filesystem::temp_directory_path() / ("sync-bench-" + std::to_string(getpid()));
  std::filesystem::create_directories(dir);
  runEngine("sqlite3", "sqlite3://db=" + (dir / "monolith.db").string(),
            "sqlite3://db=" + (dir / "service.db").string(), (dir / "anchor.db").string(), rows,
            lag_seconds);
  if (const char* dsn = std::getenv("STRANGLER_PG_DSN")) {
    const std::string schema = "sync_bench_" + std::to_string(getpid());
    {
      soci::session admin(*soci::factory_postgresql(), dsn);
      dropBenchSlots(admin, "sync_bench");  // left by runs that were killed
      admin << "CREATE SCHEMA " + schema + "_m";
      admin << "CREATE SCHEMA " + schema + "_s";
    }
    runEngine("postgresql",
              std::string("postgresql://") + dsn + " options='-csearch_path=" + schema + "_m'",
              std::string("postgresql://") + dsn + " options='-csearch_path=" + schema + "_s'", "",
              rows, lag_seconds);
    soci::session admin(*soci::factory_postgresql(), dsn);
    dropBenchSlots(admin, "sync_bench");  // this run's (not in a schema)
    admin << "DROP SCHEMA " + schema + "_m CASCADE";
    admin << "DROP SCHEMA " + schema + "_s CASCADE";
  }
  std::filesystem::remove_all(dir);
  return 0;
}
