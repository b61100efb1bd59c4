// `sync verify --watch` benchmark: the first full pass vs a watch round, while a writer moves
// drivers at a steady rate and a watch applies the changes; the anchor is the full `sync verify`
// of the same data in the same run. Not part of ctest.
//
//   build/bench/verify_watch_bench [ROWS] [ROUNDS]     (STRANGLER_PG_DSN set: PostgreSQL too)
//   CAPTURE=trigger|logical|auto (default auto), RATE=changes/s (default 5000),
//   INTERVAL_MS=between rounds (default 5000), ENGINES=sqlite3,postgresql (default both)
#include <soci/postgresql/soci-postgresql.h>
#include <soci/soci.h>
#include <unistd.h>

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

int envInt(const char* name, int fallback) {
  const char* value = std::getenv(name);
  return value != nullptr ? std::atoi(value) : fallback;
}

std::unique_ptr<sync::SyncEngine> openEngine(const std::string& monolith,
                                             const std::string& service, bool sqlite) {
  sync::SyncOptions options;
  if (const char* capture = std::getenv("CAPTURE"); capture != nullptr && !sqlite)
    options.capture = capture;
  auto opened = sync::SyncEngine::open(monolith, service, "drivers", options);
  if (!opened.ok()) {
    std::cerr << "open failed: " << opened.error().message << "\n";
    std::exit(1);
  }
  return std::move(opened).value();
}

void runEngine(const std::string& label, const std::string& monolith, const std::string& service,
               long long rows, int rounds) {
  const bool sqlite = monolith.rfind("sqlite", 0) == 0;
  const int rate = envInt("RATE", 5000);
  fillMonolith(monolith, rows);
  auto sync_engine = openEngine(monolith, service, sqlite);
  const auto copy_start = Clock::now();
  if (auto copied = sync_engine->run(); !copied.ok()) {
    std::cerr << "sync failed: " << copied.error().message << "\n";
    std::exit(1);
  }
  const double copy_s = secondsSince(copy_start);
  // The load: a watch applying, a writer moving random drivers (batches every 10 ms).
  std::atomic<bool> watch_stop{false}, writer_stop{false};
  std::thread watcher([&] { (void)sync_engine->watch(watch_stop, 20); });
  std::atomic<long long> written{0};
  std::thread writer([&] {
    auto sql = openDb(monolith);
    std::mt19937_64 rng(1);
    const int per_batch = std::max(1, rate / 100);
    auto next = Clock::now();
    long long stamp = 1767225600;
    while (!writer_stop) {
      common::Transaction tx(*sql, common::parseConnectionString(monolith)->backend,
                             common::Transaction::Mode::kWrite);
      for (int i = 0; i < per_batch; ++i) {
        const long long id = 1 + static_cast<long long>(rng() % rows);
        ++stamp;
        *sql << "UPDATE users SET loc_updated_at = :t WHERE id = :id", soci::use(stamp),
            soci::use(id);
      }
      tx.commit();
      written += per_batch;
      next += std::chrono::milliseconds(10);
      std::this_thread::sleep_until(next);
    }
  });
  const auto load_start = Clock::now();
  // The anchor: the full comparison, under the same load.
  auto anchor_engine = openEngine(monolith, service, sqlite);
  const auto anchor_start = Clock::now();
  auto anchor = anchor_engine->verify();
  const double anchor_s = secondsSince(anchor_start);
  auto verifier = openEngine(monolith, service, sqlite);
  sync::VerifyWatchOptions options;
  options.interval_ms = envInt("INTERVAL_MS", 5000);
  options.rounds = rounds;
  std::vector<sync::WatchRound> seen;
  options.on_round = [&](const sync::WatchRound& r) { seen.push_back(r); };
  std::atomic<bool> stop{false};
  auto last = verifier->verifyWatch(stop, options);
  writer_stop = true;
  writer.join();
  const double achieved = static_cast<double>(written) / secondsSince(load_start);
  // The ground truth once the load stops: the watch catches up, then a verify must find the
  // sides identical with nothing in flight (a difference that stays is a lost change).
  const auto quiet_start = Clock::now();
  std::string settled = "not identical 120 s after the load";
  while (secondsSince(quiet_start) < 120) {
    auto after = anchor_engine->verify();
    if (after.ok() && after->identical() && after->in_flight.empty()) {
      char text[64];
      std::snprintf(text, sizeof text, "identical %.0f s after the load",
                    secondsSince(quiet_start));
      settled = text;
      break;
    }
    std::this_thread::sleep_for(std::chrono::seconds(2));
  }
  watch_stop = true;
  watcher.join();
  if (!last.ok() || !anchor.ok() || seen.size() < 2) {
    std::cerr << "verify failed: "
              << (!last.ok()     ? last.error().message
                  : !anchor.ok() ? anchor.error().message
                                 : "no rounds")
              << "\n";
    std::exit(1);
  }
  std::vector<long long> ms;
  long long keys = 0;
  int identical = 0;
  for (std::size_t i = 1; i < seen.size(); ++i) {
    ms.push_back(seen[i].millis);
    keys += seen[i].keys_rechecked;
    identical += seen[i].report.identical() ? 1 : 0;
  }
  std::sort(ms.begin(), ms.end());
  const double full_s = seen[0].millis / 1000.0;
  const double p50_s = ms[ms.size() / 2] / 1000.0;
  std::printf(
      "%-10s %lld rows (snapshot %.1f s), %.0f changes/s, %s capture: sync verify %.2f s%s | "
      "watch full pass %.2f s%s, %.0f MiB of hashes | rounds every %d ms: p50 %.0f ms, max %lld "
      "ms, %lld keys/round, %d/%zu identical | round/full pass %.4f, round/sync verify %.4f | "
      "%s\n",
      label.c_str(), rows, copy_s, achieved,
      sqlite ? "trigger" : (std::getenv("CAPTURE") ? std::getenv("CAPTURE") : "auto"), anchor_s,
      anchor->identical() ? " (identical)" : " (DIFFERENT)", full_s,
      seen[0].report.identical() ? " (identical)" : " (DIFFERENT)",
      static_cast<double>(seen[0].memory_bytes) / (1024 * 1024), options.interval_ms, p50_s * 1000,
      ms.back(), keys / static_cast<long long>(ms.size()), identical, ms.size(), p50_s / full_s,
      p50_s / anchor_s, settled.c_str());
  std::printf("%-10s rounds (ms / keys; ms reading changes + reading keys + settling):",
              label.c_str());
  for (std::size_t i = 1; i < seen.size(); ++i)
    std::printf(" %lld/%lld (%lld+%lld+%lld)", static_cast<long long>(seen[i].millis),
                static_cast<long long>(seen[i].keys_rechecked),
                static_cast<long long>(seen[i].changes_millis),
                static_cast<long long>(seen[i].reread_millis),
                static_cast<long long>(seen[i].settle_millis));
  std::printf("\n");
  std::fflush(stdout);
}

}  // namespace

int main(int argc, char** argv) {
  const long long rows = argc > 1 ? std::atoll(argv[1]) : 1000000;
  const int rounds = argc > 2 ? std::atoi(argv[2]) : 5;
  const std::string engines =
      std::getenv("ENGINES") ? std::getenv("ENGINES") : "sqlite3,postgresql";
  const auto dir =
      std::filesystem::temp_directory_path() / ("verify-bench-" + std::to_string(getpid()));
  std::filesystem::create_directories(dir);
  if (engines.find("sqlite3") != std::string::npos) {
    runEngine("sqlite3", "sqlite3://db=" + (dir / "monolith.db").string(),
              "sqlite3://db=" + (dir / "service.db").string(), rows, rounds);
  }
  const char* dsn = std::getenv("STRANGLER_PG_DSN");
  if (dsn != nullptr && engines.find("postgresql") != std::string::npos) {
    // The service has a database of its own, as deployed: logical decoding of the monolith's
    // database then skips the sync's writes into the service early (they are another
    // database's WAL records) instead of reordering them with the monolith's.
    const std::string schema = "verify_bench_" + std::to_string(getpid());
    {
      soci::session admin(*soci::factory_postgresql(), dsn);
      dropBenchSlots(admin, "verify_bench");  // left by runs that were killed
      admin << "CREATE SCHEMA " + schema + "_m";
      admin << "CREATE DATABASE " + schema + "_s";
    }
    runEngine("postgresql",
              std::string("postgresql://") + dsn + " options='-csearch_path=" + schema + "_m'",
              std::string("postgresql://") + dsn + " dbname=" + schema + "_s", rows, rounds);
    soci::session admin(*soci::factory_postgresql(), dsn);
    // The sync's slot is not in a schema: drop it before the schemas.
    dropBenchSlots(admin, "verify_bench");
    admin << "DROP SCHEMA " + schema + "_m CASCADE";
    admin << "DROP DATABASE " + schema + "_s";
  }
  std::filesystem::remove_all(dir);
  return 0;
}
