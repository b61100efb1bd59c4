#include <unistd.h>

#include <atomic>
#include <chrono>
#include <csignal>
#include <iostream>
#include <nlohmann/json.hpp>
#include <thread>

#include "strangler/acl/sync_engine.h"
#include "strangler/cli/commands.h"
#include "sync_status_server.h"

namespace strangler::cli {
namespace {

using nlohmann::json;
namespace sync = acl::sync;

struct SyncArgs {
  std::string from;
  std::string to;
  std::string mapping = "drivers";
  std::string capture = "auto";
  int64_t chunk = 5000;
  bool json_output = false;
  bool back = false;
  bool force = false;
  std::string status_listen;  // watch: serve live figures on GET /status
  int verify_every_s = 0;     // watch: verify both sides this often (0: never)
  bool verify_watch = false;  // verify: keep the comparison current from the change streams
  double interval_s = 5;      // verify --watch: seconds between rounds
  int64_t rounds = 0;         // verify --watch: rounds after the full pass (0: until stopped)
  int reader_ttl_s = 60;      // verify --watch: how long a killed verifier holds pruning back
};

std::atomic<bool> g_stop{false};
// Ends one watch round: set on a stop signal and when a periodic verify is due.
std::atomic<bool> g_end_round{false};

void onStopSignal(int) {
  g_stop = true;
  g_end_round = true;
}

// Progress on a terminal: one line rewritten in place; elsewhere a line every few seconds.
void printProgress(const sync::Progress& p) {
  static auto last = std::chrono::steady_clock::time_point{};
  const bool tty = isatty(STDERR_FILENO) != 0;
  const auto now = std::chrono::steady_clock::now();
  const bool done = p.rows_done >= p.rows_total;
  if (!tty && !done && now - last < std::chrono::seconds(3)) return;
  last = now;
  const double eta = p.rows_per_second > 0 ? (p.rows_total - p.rows_done) / p.rows_per_second : 0;
  std::cerr << (tty ? "\r" : "") << "snapshot: " << p.rows_done << "/" << p.rows_total << " rows, "
            << static_cast<int64_t>(p.rows_per_second) << " rows/s, ETA "
            << static_cast<int64_t>(eta) << " s" << (tty && !done ? "   " : "\n") << std::flush;
}

common::Result<std::unique_ptr<sync::SyncEngine>> openEngine(const SyncArgs& args,
                                                             SyncStatusServer* status = nullptr) {
  sync::SyncOptions options;
  options.chunk_rows = args.chunk;
  options.capture = args.capture;
  const bool print = !args.json_output;
  options.on_progress = [print, status](const sync::Progress& p) {
    if (print) printProgress(p);
    if (status != nullptr) status->onProgress(p);
  };
  if (status != nullptr)
    options.on_batch = [status](const sync::BatchApplied& b) { status->onBatch(b); };
  return sync::SyncEngine::open(args.from, args.to, args.mapping, options);
}

int fail(const common::Error& error) {
  std::cerr << "strangler sync: " << error.message << "\n";
  return error.code == "usage" ? 2 : 1;
}

json reportJson(const sync::RunReport& r) {
  return json{{"direction", sync::toString(r.direction)},
              {"snapshot_rows", r.snapshot_rows},
              {"changes_applied", r.changes_applied},
              {"reverse_applied", r.reverse_applied},
              {"conflicts", r.conflicts},
              {"dead_letters", r.dead_letters}};
}

int printRun(const SyncArgs& args, const common::Result<sync::RunReport>& report) {
  if (!report.ok()) return fail(report.error());
  if (args.json_output) {
    std::cout << reportJson(*report).dump() << "\n";
  } else {
    std::cout << "sync " << args.mapping << " (" << sync::toString(report->direction)
              << "): snapshot rows " << report->snapshot_rows << ", changes applied "
              << report->changes_applied << " forward, " << report->reverse_applied
              << " reverse, conflicts " << report->conflicts << ", dead letters "
              << report->dead_letters << "\n";
  }
  return 0;
}

void addCommon(CLI::App* cmd, SyncArgs& args) {
  cmd->add_option("--from", args.from, "the monolith's database (SOCI connection string)")
      ->required();
  cmd->add_option("--to", args.to, "the service's database (SOCI connection string)")->required();
  cmd->add_option("--mapping", args.mapping, "a built-in mapping name or a mapping file")
      ->capture_default_str();
  cmd->add_option("--chunk", args.chunk, "rows per snapshot chunk")
      ->check(CLI::Range(int64_t{1}, int64_t{1000000}))
      ->capture_default_str();
  cmd->add_option("--capture", args.capture,
                  "how the monolith's changes are captured: logical (PostgreSQL's WAL through a "
                  "replication slot), trigger, or auto (what was installed, else logical where "
                  "wal_level=logical, else trigger)")
      ->check(CLI::IsMember({"auto", "logical", "trigger"}))
      ->capture_default_str();
  cmd->add_flag("--json", args.json_output, "print the result as JSON");
}

int watchCommand(const SyncArgs& args) {
  std::unique_ptr<SyncStatusServer> status;
  if (!args.status_listen.empty()) {
    auto address = common::parseHostPort(args.status_listen);
    if (!address.ok()) return fail({"usage", "--status-listen: " + address.error().message});
    // A second engine, with its own sessions, answers status requests off the applying thread.
    auto reader = sync::SyncEngine::open(args.from, args.to, args.mapping);
    if (!reader.ok()) return fail(reader.error());
    auto started = SyncStatusServer::start(*address, args.mapping, std::move(reader).value());
    if (!started.ok()) return fail(started.error());
    status = std::move(started).value();
    std::cout << "sync status on " << status->url() << std::endl;
  }
  auto engine = openEngine(args, status.get());
  if (!engine.ok()) return fail(engine.error());
  std::signal(SIGINT, onStopSignal);
  std::signal(SIGTERM, onStopSignal);
  std::cerr << "sync " << args.mapping << ": watching (Ctrl-C stops)\n";
  using Clock = std::chrono::steady_clock;
  const auto period = std::chrono::seconds(args.verify_every_s);
  std::atomic<int64_t> verify_due_ms{0};
  const auto setDue = [&] {
    verify_due_ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                        (Clock::now() + period).time_since_epoch())
                        .count();
  };
  setDue();
  std::atomic<bool> timer_done{false};
  std::thread timer;
  if (args.verify_every_s > 0) {
    timer = std::thread([&] {
      while (!timer_done && !g_stop) {
        std::this_thread::sleep_for(std::chrono::milliseconds(100));
        const auto now_ms =
            std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now().time_since_epoch())
                .count();
        if (now_ms >= verify_due_ms) g_end_round = true;
      }
    });
  }
  const auto finish = [&](int code) {
    timer_done = true;
    if (timer.joinable()) timer.join();
    if (status) status->markStopping();
    return code;
  };
  // A flip made by another process ends one watch round; start the next in the new direction.
  for (;;) {
    g_end_round = g_stop.load();
    auto report = (*engine)->watch(g_end_round);
    if (!report.ok()) return finish(fail(report.error()));
    if (g_stop) return finish(printRun(args, report));
    if (args.verify_every_s <= 0 ||
        Clock::now() < Clock::time_point(std::chrono::milliseconds(verify_due_ms.load())))
      continue;
    // Drain first so that only changes made during the comparison itself can show as differences.
    auto drained = (*engine)->run();
    if (!drained.ok()) return finish(fail(drained.error()));
    auto before = (*engine)->status();
    auto verified = (*engine)->verify();
    if (verified.ok() && status)
      status->onVerify(*verified, before.ok() ? before->pending_changes : 0);
    if (!verified.ok()) std::cerr << "sync verify: " << verified.error().message << "\n";
    setDue();
  }
}

json verifyJson(const sync::VerifyReport& r) {
  return json{{"direction", sync::toString(r.direction)},
              {"identical", r.identical()},
              {"source_rows", r.source_rows},
              {"target_rows", r.target_rows},
              {"ranges", r.ranges},
              {"differing_ranges", r.differing_ranges},
              {"differing_keys", r.differing_keys},
              {"in_flight", r.in_flight},
              {"untranslatable", r.untranslatable},
              {"dead_letters", r.dead_letters}};
}

// One line per round: what differs, the rows each side has, the keys read again, the time.
void printRound(const SyncArgs& args, const sync::WatchRound& r) {
  const auto& report = r.report;
  if (args.json_output) {
    json out = verifyJson(report);
    out["round"] = r.round;
    out["full_pass"] = r.full_pass;
    out["differing"] = r.differing;
    out["keys_rechecked"] = r.keys_rechecked;
    out["ms"] = r.millis;
    out["memory_bytes"] = r.memory_bytes;
    out["slot_drains"] = r.drains;
    if (!r.note.empty()) out["note"] = r.note;
    std::cout << out.dump() << std::endl;
    return;
  }
  if (!r.note.empty()) std::cout << "note: " << r.note << "\n";
  std::cout << (r.full_pass ? "full pass" : "round " + std::to_string(r.round)) << ": ";
  if (report.identical()) {
    std::cout << "identical";
  } else {
    std::cout << r.differing << " differing";
    if (!report.differing_keys.empty()) {
      std::cout << " (keys";
      for (auto k : report.differing_keys)
        std::cout << " " << k;
      std::cout << (r.differing > static_cast<int64_t>(report.differing_keys.size()) ? " …)" : ")");
    }
    if (!report.untranslatable.empty())
      std::cout << ", " << report.untranslatable.size() << " untranslatable";
  }
  if (!report.in_flight.empty()) std::cout << ", " << report.in_flight.size() << " in flight";
  std::cout << ", " << report.source_rows << "/" << report.target_rows << " rows, "
            << r.keys_rechecked << " keys rechecked, " << r.millis << " ms";
  if (r.full_pass) std::cout << ", " << r.memory_bytes / (1024 * 1024) << " MiB of hashes";
  std::cout << std::endl;
  for (const auto& why : report.untranslatable)
    std::cout << "untranslatable: " << why << "\n";
}

int verifyWatchCommand(const SyncArgs& args) {
  auto engine = openEngine(args);
  if (!engine.ok()) return fail(engine.error());
  std::signal(SIGINT, onStopSignal);
  std::signal(SIGTERM, onStopSignal);
  sync::VerifyWatchOptions options;
  options.interval_ms = static_cast<int>(args.interval_s * 1000);
  options.rounds = args.rounds;
  options.reader_ttl_s = args.reader_ttl_s;
  options.on_round = [&args](const sync::WatchRound& r) { printRound(args, r); };
  auto last = (*engine)->verifyWatch(g_stop, options);
  if (!last.ok()) {
    if (last.error().code == "not_streaming") {
      std::cerr << "strangler sync: " << last.error().message << "\n";
      return 2;
    }
    return fail(last.error());
  }
  return last->report.identical() ? 0 : 1;
}

}  // namespace

void registerSyncCommands(CLI::App& app, GlobalOptions&, Action& action) {
  auto* sync_cmd = app.add_subcommand("sync", "copy and keep in sync the tables a service needs");
  sync_cmd->require_subcommand(1);
  auto args = std::make_shared<SyncArgs>();
  const char* example =
      "\nExample:\n  strangler sync run --from sqlite3://db=monolith.db --to "
      "sqlite3://db=driver-service.db\n";

  auto* install =
      sync_cmd->add_subcommand("install", "create the sync tables and capture triggers");
  addCommon(install, *args);
  install->footer(example);
  install->callback([&action, args] {
    action = [args] {
      auto engine = openEngine(*args);
      if (!engine.ok()) return fail(engine.error());
      auto done = (*engine)->install();
      if (!done.ok()) return fail(done.error());
      std::cout << "sync " << args->mapping << ": capture installed\n";
      return 0;
    };
  });

  auto* run = sync_cmd->add_subcommand("run", "snapshot if needed, apply pending changes, exit");
  addCommon(run, *args);
  run->footer(example);
  run->callback([&action, args] {
    action = [args] {
      auto engine = openEngine(*args);
      if (!engine.ok()) return fail(engine.error());
      return printRun(*args, (*engine)->run());
    };
  });

  auto* watch = sync_cmd->add_subcommand("watch", "like run, then keep applying until stopped");
  addCommon(watch, *args);
  watch->add_option("--status-listen", args->status_listen,
                    "serve live figures (lag, rate, pending changes) as JSON on GET "
                    "http://HOST:PORT/status; port 0 picks a free port");
  watch
      ->add_option("--verify-every", args->verify_every_s,
                   "verify both sides every N seconds while watching (0: never); the result "
                   "shows in the status")
      ->check(CLI::Range(0, 86400))
      ->capture_default_str();
  watch->footer(std::string(example) +
                "  strangler sync watch --from sqlite3://db=monolith.db --to "
                "sqlite3://db=driver-service.db --status-listen 127.0.0.1:0\n");
  watch->callback([&action, args] { action = [args] { return watchCommand(*args); }; });

  auto* verify = sync_cmd->add_subcommand("verify", "compare both sides; exit 1 when they differ");
  addCommon(verify, *args);
  verify->add_flag("--watch", args->verify_watch,
                   "after one full comparison, keep it current from the change streams: each "
                   "round compares only the keys changed since the one before, and prints one "
                   "line (identical / N differing / in flight, rows, keys rechecked, ms). Its own "
                   "reading of the streams (a temporary replication slot, or a registered position "
                   "on the change tables) never disturbs a running watch. Refused (exit 2) during "
                   "the snapshot");
  verify->add_option("--interval", args->interval_s, "--watch: seconds between rounds")
      ->check(CLI::Range(0.05, 3600.0))
      ->capture_default_str();
  verify
      ->add_option("--rounds", args->rounds,
                   "--watch: rounds after the full pass, then exit 1 if the last one found "
                   "differences, else 0 (0: until SIGINT/SIGTERM)")
      ->check(CLI::Range(int64_t{0}, int64_t{1000000000}))
      ->capture_default_str();
  verify
      ->add_option("--reader-ttl", args->reader_ttl_s,
                   "--watch: seconds a registration on a change table holds the sync's pruning "
                   "back after the verifier stopped renewing it (killed)")
      ->check(CLI::Range(1, 86400))
      ->capture_default_str();
  verify->footer(std::string(example) +
                 "  strangler sync verify --watch --interval 5 --from sqlite3://db=monolith.db "
                 "--to sqlite3://db=driver-service.db\n");
  verify->callback([&action, args] {
    action = [args] {
      if (args->verify_watch) return verifyWatchCommand(*args);
      auto engine = openEngine(*args);
      if (!engine.ok()) return fail(engine.error());
      auto report = (*engine)->verify();
      if (!report.ok()) return fail(report.error());
      if (args->json_output) {
        std::cout << verifyJson(*report).dump() << "\n";
      } else {
        std::cout << "verify " << args->mapping << " (" << sync::toString(report->direction)
                  << "): " << report->source_rows << " source rows, " << report->target_rows
                  << " target rows, " << report->ranges << " key ranges, "
                  << report->differing_ranges << " differ, " << report->dead_letters
                  << " dead letters\n";
        if (!report->differing_keys.empty()) {
          std::cout << "differing keys:";
          for (auto k : report->differing_keys)
            std::cout << " " << k;
          std::cout << "\n";
        }
        if (!report->in_flight.empty())
          std::cout << report->in_flight.size()
                    << " key(s) differed while their changes were in flight (lag, applied"
                       " since)\n";
        for (const auto& why : report->untranslatable)
          std::cout << "untranslatable: " << why << "\n";
        std::cout << (report->identical() ? "identical\n" : "DIFFERENT\n");
      }
      return report->identical() ? 0 : 1;
    };
  });

  auto* status = sync_cmd->add_subcommand("status", "checkpoint, lag and counters");
  addCommon(status, *args);
  status->footer(example);
  status->callback([&action, args] {
    action = [args] {
      auto engine = openEngine(*args);
      if (!engine.ok()) return fail(engine.error());
      auto s = (*engine)->status();
      if (!s.ok()) return fail(s.error());
      const json out{
          {"mapping", args->mapping},
          {"direction", sync::toString(s->direction)},
          {"phase", s->phase},
          {"snapshot_last_key", s->snapshot_last_key ? json(*s->snapshot_last_key) : json(nullptr)},
          {"rows_copied", s->rows_copied},
          {"changes_applied", s->changes_applied},
          {"owner", s->direction == sync::Direction::kForward ? "monolith" : "service"},
          {"position", s->position},
          {"reverse_position", s->reverse_position},
          {"reverse_applied", s->reverse_applied},
          {"pending_changes", s->pending_changes},
          {"reverse_pending", s->reverse_pending},
          {"lease",
           s->lease ? json{{"holder", s->lease->holder}, {"expires_in_ms", s->lease->expires_in_ms}}
                    : json(nullptr)},
          {"fence", s->fence},
          {"capture", s->capture},
          {"slot_lag_bytes", s->slot_lag_bytes ? json(*s->slot_lag_bytes) : json(nullptr)},
          // How far behind the slot is in time: the age of its oldest change not applied yet.
          {"slot_lag_s",
           s->slot_lag_bytes ? json(s->oldest_pending_age_s.value_or(0)) : json(nullptr)},
          {"keys", s->key_mode},
          {"mapped_keys", s->mapped_keys},
          {"oldest_pending_age_s",
           s->oldest_pending_age_s ? json(*s->oldest_pending_age_s) : json(nullptr)},
          {"dead_letters", s->dead_letters}};
      if (args->json_output) {
        std::cout << out.dump() << "\n";
      } else {
        for (const auto& [key, value] : out.items())
          std::cout << key << ": " << value.dump() << "\n";
      }
      return 0;
    };
  });

  auto* uninstall = sync_cmd->add_subcommand(
      "uninstall", "remove the capture triggers, functions and change logs the sync installed");
  addCommon(uninstall, *args);
  uninstall->footer(example);
  uninstall->callback([&action, args] {
    action = [args] {
      auto engine = openEngine(*args);
      if (!engine.ok()) return fail(engine.error());
      auto removed = (*engine)->uninstall();
      if (!removed.ok()) return fail(removed.error());
      if (args->json_output) {
        std::cout << json{{"mapping", args->mapping}, {"removed", *removed}}.dump() << "\n";
      } else {
        std::cout << "sync " << args->mapping << ": removed " << removed->size() << " item(s)\n";
        for (const auto& what : *removed)
          std::cout << "  " << what << "\n";
      }
      return 0;
    };
  });

  auto* flip = sync_cmd->add_subcommand(
      "flip", "move the mapping's writes to the service (or back with --back)");
  addCommon(flip, *args);
  flip->add_flag("--back", args->back, "give ownership back to the monolith");
  flip->add_flag("--force", args->force,
                 "a repair: flip even though the sides differ, copying the service's rows over "
                 "the monolith's (needs the running watch stopped)");
  flip->footer(example);
  flip->callback([&action, args] {
    action = [args] {
      auto engine = openEngine(*args);
      if (!engine.ok()) return fail(engine.error());
      auto direction = (*engine)->flip(args->back, args->force);
      if (!direction.ok()) return fail(direction.error());
      std::cout << "sync " << args->mapping << ": now "
                << (*direction == sync::Direction::kReverse
                        ? "service → monolith (service owns writes)"
                        : "monolith → service (monolith owns writes)")
                << "\n";
      return 0;
    };
  });
}

}  // namespace strangler::cli
