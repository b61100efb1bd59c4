// Capture benchmark: the monolith's write throughput with the sync's change capture installed
// vs without it, in the same run. Writers run the monolith's own location update
// (SociDriverRepository::updateLocation: one autocommitted UPDATE) on random drivers, from
// several concurrent sessions. Modes: no capture (the anchor), trigger capture, logical capture
// (PostgreSQL with wal_level=logical) and, with WATCH set, each capture with a watch applying
// the changes meanwhile. Every round runs every mode, starting with another one each round;
// the figures are medians over the rounds. Not part of ctest.
//
//   build/bench/capture_bench [DRIVERS] [SECONDS_PER_ROUND] [ROUNDS] [SESSIONS]
//   (STRANGLER_PG_DSN set: PostgreSQL too; WATCH=1: the +watch modes)
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
#include <map>
#include <memory>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "bench_db.h"
#include "strangler/acl/sync_engine.h"
#include "strangler/common/db.h"

namespace {

using Clock = std::chrono::steady_clock;
namespace sync = strangler::acl::sync;
namespace common = strangler::common;
using strangler::bench::fillMonolith;
using strangler::bench::openDb;

// `sessions` writers move random drivers for `seconds`; returns writes per second.
double writeRate(const std::string& conn, long long drivers, int sessions, double seconds,
                 unsigned seed) {
  std::atomic<bool> stop{false};
  std::atomic<long long> writes{0};
  std::atomic<long long> errors{0};
  std::vector<std::thread> writers;
  std::vector<std::unique_ptr<soci::session>> opened;
  for (int w = 0; w < sessions; ++w)
    opened.push_back(openDb(conn));
  const auto start = Clock::now();
  for (int w = 0; w < sessions; ++w) {
    writers.emplace_back([&, w] {
      soci::session& sql = *opened[static_cast<std::size_t>(w)];
      std::mt19937_64 rng(seed * 131 + static_cast<unsigned>(w));
      long long lat = 0, lng = 0, when = 0, id = 0;
      const int type = 2;
      // The monolith's own statement (monolith/adapters/persistence/src/soci_repositories.cpp).
      soci::statement move =
          (sql.prepare << "UPDATE users SET lat_e6 = :lat, lng_e6 = :lng, loc_updated_at = :a,"
                          " updated_at = :u WHERE id = :id AND user_type = :t",
           soci::use(lat), soci::use(lng), soci::use(when), soci::use(when), soci::use(id),
           soci::use(type));
      long long mine = 0;
      while (!stop.load(std::memory_order_relaxed)) {
        id = 1 + static_cast<long long>(rng() % static_cast<unsigned long long>(drivers));
        lat = 37400000 + static_cast<long long>(rng() % 300000);
        lng = 126800000 + static_cast<long long>(rng() % 300000);
        when = 1800000000 + mine;
        try {
          move.execute(true);
          ++mine;
        } catch (const soci::soci_error& e) {
          if (errors++ == 0) std::cerr << "write failed: " << e.what() << "\n";
        }
      }
      writes += mine;
    });
  }
  std::this_thread::sleep_for(std::chrono::duration<double>(seconds));
  stop = true;
  for (auto& t : writers)
    t.join();
  const double elapsed = std::chrono::duration<double>(Clock::now() - start).count();
  if (errors > 0) std::cerr << errors << " writes failed\n";
  return static_cast<double>(writes) / elapsed;
}

// Adds or removes the capture. Its DDL waits at most the sync's lock_timeout (200 ms) for the
// table; autovacuum, which the writes set off, can hold it that long: try again.
template <typename Step>
void retried(const char* what, Step step) {
  for (int attempt = 1;; ++attempt) {
    auto done = step();
    if (done.ok()) return;
    if (attempt == 50) {
      std::cerr << what << " failed: " << done.error().message << "\n";
      std::exit(1);
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.empty() ? 0 : v[v.size() / 2];
}

/// What the writers run against: no capture, or one kind installed, optionally with a watch
/// applying the changes meanwhile.
struct Mode {
  std::string name;
  std::string capture;  ///< empty: none
  bool watch = false;
};

void runEngine(const std::string& label, const std::string& monolith, const std::string& service,
               long long drivers, double seconds, int rounds, int sessions, bool with_watch) {
  fillMonolith(monolith, drivers);
  if (monolith.rfind("sqlite", 0) != 0) *openDb(monolith) << "ANALYZE users";
  std::vector<Mode> modes = {{"none", "", false}, {"trigger", "trigger", false}};
  const bool postgres = monolith.rfind("postgresql", 0) == 0;
  if (postgres) {
    auto sql = openDb(monolith);
    std::string level;
    *sql << "SHOW wal_level", soci::into(level);
    if (level == "logical") modes.push_back({"logical", "logical", false});
  }
  if (with_watch) {
    const std::size_t kinds = modes.size();
    for (std::size_t k = 1; k < kinds; ++k)
      modes.push_back({modes[k].name + "+watch", modes[k].capture, true});
  }
  std::map<std::string, std::unique_ptr<sync::SyncEngine>> engines;
  for (const auto& mode : modes) {
    if (mode.capture.empty() || engines.count(mode.capture)) continue;
    sync::SyncOptions options;
    options.lease_holder = "capture_bench";
    options.capture = mode.capture;
    auto engine = sync::SyncEngine::open(monolith, service, "drivers", options);
    if (!engine.ok()) {
      std::cerr << "open failed: " << engine.error().message << "\n";
      std::exit(1);
    }
    engines[mode.capture] = std::move(engine.value());
  }
  sync::SyncEngine* installed = nullptr;
  // The sync's own tables exist from here on; modes add and remove only the capture.
  retried("install", [&] { return engines["trigger"]->install(); });
  installed = engines["trigger"].get();
  std::map<std::string, std::vector<double>> rates;
  for (int r = 0; r < rounds; ++r) {
    // Each round starts with another mode, so a drift over the run favours none of them.
    for (std::size_t k = 0; k < modes.size(); ++k) {
      const Mode& mode = modes[(k + static_cast<std::size_t>(r)) % modes.size()];
      sync::SyncEngine* wanted = mode.capture.empty() ? nullptr : engines[mode.capture].get();
      if (installed != wanted && installed != nullptr)
        retried("uninstall", [&] { return installed->uninstall(); });
      if (installed != wanted && wanted != nullptr)
        retried("install", [&] { return wanted->install(); });
      installed = wanted;
      std::atomic<bool> stop{false};
      std::thread watcher;
      if (mode.watch) {
        retried("run", [&] { return wanted->run(); });  // the snapshot, outside the measure
        watcher = std::thread([&] {
          if (auto watched = wanted->watch(stop, 20); !watched.ok())
            std::cerr << "watch failed: " << watched.error().message << "\n";
        });
      }
      const auto seed = static_cast<unsigned>(r * 16 + static_cast<int>(k));
      const double rate = writeRate(monolith, drivers, sessions, seconds, seed);
      stop = true;
      if (watcher.joinable()) watcher.join();
      rates[mode.name].push_back(rate);
    }
    std::printf("%-10s round %d:", label.c_str(), r + 1);
    for (const auto& mode : modes)
      std::printf(" %s %.0f", mode.name.c_str(), rates[mode.name].back());
    std::printf(" writes/s\n");
    std::fflush(stdout);
  }
  const double none = median(rates["none"]);
  std::printf("%-10s %d sessions, %lld drivers, medians of %d rounds × %.0f s: none %.0f writes/s",
              label.c_str(), sessions, drivers, rounds, seconds, none);
  for (std::size_t k = 1; k < modes.size(); ++k) {
    const double rate = median(rates[modes[k].name]);
    std::printf(" | %s %.0f (ratio %.2f)", modes[k].name.c_str(), rate, rate / none);
  }
  std::printf("\n");
  if (installed != nullptr) retried("uninstall", [&] { return installed->uninstall(); });
}

}  // namespace

int main(int argc, char** argv) {
  const long long drivers = argc > 1 ? std::atoll(argv[1]) : 100000;
  const double seconds = argc > 2 ? std::atof(argv[2]) : 3;
  const int rounds = argc > 3 ? std::atoi(argv[3]) : 5;
  const int sessions = argc > 4 ? std::atoi(argv[4]) : 8;
  const auto dir =
      std::filesystem::temp_directory_path() / ("capture-bench-" + std::to_string(getpid()));
  std::filesystem::create_directories(dir);
  const bool with_watch = std::getenv("WATCH") != nullptr;
  runEngine("sqlite3", "sqlite3://db=" + (dir / "monolith.db").string(),
            "sqlite3://db=" + (dir / "service.db").string(), drivers, seconds, rounds, sessions,
            with_watch);
  if (const char* dsn = std::getenv("STRANGLER_PG_DSN")) {
    const std::string schema = "capture_bench_" + std::to_string(getpid());
    {
      soci::session admin(*soci::factory_postgresql(), dsn);
      admin << "CREATE SCHEMA " + schema + "_m";
      admin << "CREATE SCHEMA " + schema + "_s";
    }
    runEngine("postgresql",
              std::string("postgresql://") + dsn + " options='-csearch_path=" + schema + "_m'",
              std::string("postgresql://") + dsn + " options='-csearch_path=" + schema + "_s'",
              drivers, seconds, rounds, sessions, with_watch);
    soci::session admin(*soci::factory_postgresql(), dsn);
    admin << "DROP SCHEMA " + schema + "_m CASCADE";
    admin << "DROP SCHEMA " + schema + "_s CASCADE";
  }
  std::filesystem::remove_all(dir);
  return 0;
}
