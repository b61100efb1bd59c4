#include <Poco/Net/HTTPClientSession.h>
#include <Poco/Net/HTTPRequest.h>
#include <Poco/Net/HTTPResponse.h>
#include <Poco/StreamCopier.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <memory>
#include <mutex>
#include <random>
#include <regex>
#include <thread>

#include "config_store.h"
#include "cutover.h"
#include "strangler/acl/sync_engine.h"
#include "strangler/cli/commands.h"
#include "strangler/common/process.h"

// `strangler demo`: the whole migration of the drivers route on one machine, with real
// processes on free loopback ports, traffic flowing, and every step reported.
namespace strangler::cli {
namespace {

namespace fs = std::filesystem;
using common::ChildProcess;
using nlohmann::json;

std::atomic<bool> g_interrupted{false};
void onInterrupt(int) {
  g_interrupted = true;
}

struct DemoArgs {
  std::string workdir;
  bool fast = false;
  bool keep_running = false;
};

// Sibling binaries: next to this one (installed), or where the build tree puts them.
std::string findBinary(const std::string& name, const std::string& build_subdir) {
  const fs::path self = fs::read_symlink("/proc/self/exe").parent_path();
  for (const fs::path& candidate : {self / name, self / ".." / build_subdir / name}) {
    if (fs::exists(candidate)) return fs::canonical(candidate).string();
  }
  throw std::runtime_error("cannot find the " + name + " binary next to " + self.string());
}

struct Running {
  std::unique_ptr<ChildProcess> process;
  uint16_t port = 0;
  uint16_t admin_port = 0;
};

Running startService(const std::string& what, const std::string& binary,
                     const std::vector<std::string>& args, const ChildProcess::Env& env = {}) {
  Running r;
  r.process = ChildProcess::start(binary, args, env);
  const auto line = r.process->waitForLine("listening on http://", std::chrono::seconds(30));
  if (!line) throw std::runtime_error(what + " did not start");
  std::smatch m;
  if (!std::regex_search(*line, m, std::regex(R"(listening on http://[^ ]+:(\d+))"))) {
    throw std::runtime_error(what + " printed no port: " + *line);
  }
  r.port = static_cast<uint16_t>(std::stoi(m[1].str()));
  if (std::regex_search(*line, m, std::regex(R"(admin http://[^ ]+:(\d+))"))) {
    r.admin_port = static_cast<uint16_t>(std::stoi(m[1].str()));
  }
  std::cout << "  started " << what << " on 127.0.0.1:" << r.port
            << (r.admin_port ? " (admin 127.0.0.1:" + std::to_string(r.admin_port) + ")" : "")
            << "\n";
  return r;
}

/// Clients of RideShare through the proxy: reads and writes of drivers, sticky per user.
class Traffic {
 public:
  Traffic(uint16_t proxy_port, int64_t first_driver, int64_t drivers)
      : port_(proxy_port), first_driver_(first_driver), drivers_(drivers) {}
  ~Traffic() { stop(); }

  void start(int threads) {
    for (int t = 0; t < threads; ++t)
      threads_.emplace_back([this, t] { run(t); });
  }
  void stop() {
    running_ = false;
    for (auto& t : threads_)
      t.join();
    threads_.clear();
  }
  int64_t sent() const { return sent_; }
  int64_t failed() const { return failed_; }
  std::string lastFailure() {
    std::lock_guard lock(mutex_);
    return last_failure_;
  }

 private:
  void run(int thread) {
    std::mt19937_64 rng(static_cast<uint64_t>(thread) * 7919 + 1);
    std::unique_ptr<Poco::Net::HTTPClientSession> session;
    while (running_) {
      const int64_t driver =
          first_driver_ + static_cast<int64_t>(rng() % static_cast<uint64_t>(drivers_));
      const std::string user = std::to_string(rng() % 50);
      std::string method = "GET", target = "/api/drivers/" + std::to_string(driver), body;
      const auto pick = rng() % 10;
      if (pick < 3) {
        target = "/api/drivers/nearby?lat=37.5665&lng=126.978&radius_km=2&limit=5";
      } else if (pick < 5) {
        method = "PUT";
        target += "/location";
        body = json{{"lat", 37.50 + static_cast<double>(rng() % 1000) / 10000.0},
                    {"lng", 126.95 + static_cast<double>(rng() % 1000) / 10000.0}}
                   .dump();
      }
      try {
        if (!session) {
          session = std::make_unique<Poco::Net::HTTPClientSession>("127.0.0.1", port_);
          session->setTimeout(Poco::Timespan(5, 0));
        }
        Poco::Net::HTTPRequest request(method, target, Poco::Net::HTTPMessage::HTTP_1_1);
        request.set("X-User-Id", user);
        request.setContentLength(static_cast<std::streamsize>(body.size()));
        session->sendRequest(request) << body;
        Poco::Net::HTTPResponse response;
        std::istream& in = session->receiveResponse(response);
        std::string answer;
        Poco::StreamCopier::copyToString(in, answer);
        ++sent_;
        if (response.getStatus() >= 500)
          fail(method + " " + target + " -> " + std::to_string(response.getStatus()) + " " +
               answer);
      } catch (const std::exception& e) {
        // A kept-alive connection the proxy closed: reconnect and count it only if it repeats.
        session.reset();
        ++sent_;
        fail(method + " " + target + " -> " + e.what());
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
  }
  void fail(const std::string& what) {
    ++failed_;
    std::lock_guard lock(mutex_);
    last_failure_ = what;
  }

  uint16_t port_;
  int64_t first_driver_;
  int64_t drivers_;
  std::atomic<bool> running_{true};
  std::atomic<int64_t> sent_{0};
  std::atomic<int64_t> failed_{0};
  std::mutex mutex_;
  std::string last_failure_;
  std::vector<std::thread> threads_;
};

class Demo {
 public:
  explicit Demo(DemoArgs args) : args_(std::move(args)) {}

  int run() {
    const auto monolith_bin = findBinary("monolith", "monolith");
    const auto service_bin = findBinary("driver-service", "extracted/driver-service");
    const auto proxy_bin = findBinary("strangler-proxy", "strangler-proxy");
    const auto self = fs::read_symlink("/proc/self/exe").string();
    fs::path dir = args_.workdir.empty()
                       ? fs::temp_directory_path() / ("strangler-demo-" + std::to_string(getpid()))
                       : fs::path(args_.workdir);
    fs::create_directories(dir);
    dir = fs::canonical(dir);
    const std::string monolith_db = "sqlite3://db=" + (dir / "monolith.db").string();
    const std::string service_db = "sqlite3://db=" + (dir / "driver-service.db").string();
    const int seed = args_.fast ? 200 : 1000;
    const auto step_time = std::chrono::milliseconds(args_.fast ? 1500 : 5000);
    std::cout << "Strangler demo: migrating RideShare's /api/drivers/** to driver-service\n"
              << "work folder: " << dir.string() << "\n\n1. Starting the pieces\n";

    auto monolith = startService(
        "monolith", monolith_bin,
        {"--listen", "127.0.0.1:0", "--db", monolith_db, "--seed", std::to_string(seed)});
    // The sync job serves its live figures (lag, rate, pending changes) for the dashboard.
    auto sync = ChildProcess::start(self, {"sync", "watch", "--from", monolith_db, "--to",
                                           service_db, "--status-listen", "127.0.0.1:0"});
    const auto status_line = sync->waitForLine("sync status on http://", std::chrono::seconds(30));
    std::smatch status_url;
    if (!status_line ||
        !std::regex_search(*status_line, status_url, std::regex(R"(http://[^ ]+/status)"))) {
      throw std::runtime_error("the sync job did not start");
    }
    sync_status_url_ = status_url[0].str();
    auto engine = acl::sync::SyncEngine::open(monolith_db, service_db, "drivers");
    if (!engine.ok()) throw std::runtime_error(engine.error().message);
    waitFor([&] { return (*engine)->status()->phase == "stream"; }, "the first snapshot");
    std::cout << "  started the sync job (snapshot done: " << (*engine)->status()->rows_copied
              << " drivers copied; live status " << sync_status_url_ << ")\n";
    auto service = startService("driver-service", service_bin,
                                {"--listen", "127.0.0.1:0", "--db", service_db, "--monolith",
                                 "http://127.0.0.1:" + std::to_string(monolith.port)});

    const std::string token = "demo-" + std::to_string(std::random_device{}());
    setenv("STRANGLER_DEMO_ADMIN_TOKEN", token.c_str(), 1);
    config_ = (dir / "strangler.json").string();
    writeConfig(monolith.port, service.port);
    auto proxy = startService("strangler-proxy", proxy_bin, {"--config", config_, "--workers", "2"},
                              {{"STRANGLER_DEMO_ADMIN_TOKEN", token}});
    admin_ = "http://127.0.0.1:" + std::to_string(proxy.admin_port);
    std::cout << "  dashboard: " << admin_
              << "/\n\n2. Traffic: 4 clients reading and moving drivers through the proxy\n";

    Traffic traffic(proxy.port, seed + 1, seed);
    traffic.start(4);
    pause(step_time);
    report("route in stage monolith", **engine);

    std::cout << "\n3. Walking the drivers route through its stages\n";
    step("shadow", std::nullopt, **engine, step_time);
    step("canary", 10, **engine, step_time);
    step("canary", 50, **engine, step_time);
    // The route and its data move together, fenced: writes held on the proxy, the sync drained
    // to the fence, ownership flipped, the route switched, the writes released.
    cutover(true, {{"stage", "extracted"}}, monolith_db, service_db);
    pause(step_time);
    report("service owns the drivers' writes", **engine);
    bool identical = verified(**engine, "after the extraction");
    std::cout << "\n4. Rolling back to the monolith (canary 50%, the monolith owning the data)\n";
    cutover(false, {{"stage", "canary"}, {"percent", 50}}, monolith_db, service_db);
    pause(step_time);
    report("monolith owns the drivers again", **engine);
    identical = verified(**engine, "after the rollback") && identical;
    std::cout << "\n5. Extracting again\n";
    cutover(true, {{"stage", "extracted"}}, monolith_db, service_db);
    pause(step_time);
    traffic.stop();
    report("final", **engine);
    identical = verified(**engine, "at the end") && identical;
    auto verify = (*engine)->verify();
    std::cout << "\nSummary\n  client requests: " << traffic.sent()
              << "\n  failed requests: " << traffic.failed()
              << (traffic.failed() ? " (last: " + traffic.lastFailure() + ")" : "")
              << "\n  sync verify: " << (identical ? "identical" : "DIFFERENT") << " ("
              << (verify.ok() ? std::to_string(verify->source_rows) + " drivers"
                              : verify.error().message)
              << ")\n";
    const bool ok = traffic.failed() == 0 && identical;
    std::cout << (ok ? "Demo passed.\n" : "Demo FAILED.\n");
    if (args_.keep_running && !g_interrupted) {
      // One client keeps going so that the dashboard shows live rates and sync lag.
      Traffic background(proxy.port, seed + 1, seed);
      background.start(1);
      std::cout << "\nStill running, with one client's traffic.\n  dashboard: " << admin_
                << "/\n  proxy:     http://127.0.0.1:" << proxy.port
                << "\n  sync:      " << sync_status_url_ << "\n(Ctrl-C stops everything)"
                << std::endl;
      while (!g_interrupted)
        std::this_thread::sleep_for(std::chrono::milliseconds(200));
    }
    std::cout << "Stopping every process the demo started.\n";
    return ok ? 0 : 1;
  }

 private:
  void writeConfig(uint16_t monolith_port, uint16_t service_port) {
    const json config{
        {"listen", "127.0.0.1:0"},
        {"admin",
         {{"listen", "127.0.0.1:0"},
          {"token_env", "STRANGLER_DEMO_ADMIN_TOKEN"},
          {"sync_status_url", sync_status_url_}}},
        {"debug_headers", true},
        {"upstreams",
         {{"monolith",
           {{"endpoints", {"127.0.0.1:" + std::to_string(monolith_port)}}, {"timeout_ms", 3000}}},
          {"driver-service",
           {{"endpoints", {"127.0.0.1:" + std::to_string(service_port)}},
            {"timeout_ms", 2000},
            {"circuit_breaker", {{"consecutive_failures", 5}, {"open_ms", 5000}}}}}}},
        {"default_upstream", "monolith"},
        {"routes",
         {{{"name", "drivers"},
           {"match", {{"path", "/api/drivers/**"}, {"methods", {"GET", "PUT"}}}},
           {"target", "driver-service"},
           {"stage", "monolith"},
           {"data", "drivers"},
           {"sticky", {{"header", "X-User-Id"}}},
           {"fallback", true}}}}};
    std::ofstream(config_) << config.dump(2) << "\n";
  }

  void step(const std::string& stage, std::optional<int> percent, acl::sync::SyncEngine& engine,
            std::chrono::milliseconds dwell) {
    if (g_interrupted) throw std::runtime_error("interrupted");
    auto store = ConfigStore::open(config_);
    if (!store.ok()) throw std::runtime_error(store.error().message);
    auto* route = store->route("drivers");
    const auto before = stageOf(*route);
    (*route)["stage"] = stage;
    if (percent)
      (*route)["percent"] = *percent;
    else
      route->erase("percent");
    auto done = commitAndReload(*store,
                                {nowIso8601(), "drivers", stage == "monolith" ? "reset" : stage,
                                 before, stageOf(*route), "demo"},
                                admin_);
    if (!done.ok()) throw std::runtime_error(done.error().message);
    std::cout << "  drivers: " << before.dump() << " -> " << stageOf(*route).dump()
              << " (proxy reloaded)\n";
    if (dwell.count() > 0) {
      pause(dwell);
      report(stage + (percent ? " " + std::to_string(*percent) + "%" : ""), engine);
    }
  }

  void cutover(bool to_service, const nlohmann::ordered_json& step, const std::string& from,
               const std::string& to) {
    if (g_interrupted) throw std::runtime_error("interrupted");
    CutoverRequest request;
    request.route = "drivers";
    request.from_db = from;
    request.to_db = to;
    request.to_service = to_service;
    request.step = step;
    request.action = to_service ? "extract" : "rollback";
    GlobalOptions global;
    global.config = config_;
    global.admin = admin_;
    std::cout << "  drivers: fenced cutover, the " << (to_service ? "service" : "monolith")
              << " takes the data\n";
    if (runCutover(global, request) != 0) throw std::runtime_error("the cutover was refused");
  }

  // Both databases compared once the sync caught up; a difference fails the demo loudly.
  bool verified(acl::sync::SyncEngine& engine, const std::string& when) {
    auto verify = engine.verify();
    const bool identical = verify.ok() && verify->identical();
    std::cout << "  sync verify " << when << ": " << (identical ? "identical" : "DIFFERENT") << " ("
              << (verify.ok() ? std::to_string(verify->source_rows) + " drivers, " +
                                    std::to_string(verify->in_flight.size()) + " in flight"
                              : verify.error().message)
              << ")\n";
    if (verify.ok() && !identical) {
      std::cout << "  differing keys:";
      for (auto k : verify->differing_keys)
        std::cout << " " << k;
      std::cout << "\n";
    }
    return identical;
  }

  void report(const std::string& label, acl::sync::SyncEngine& engine) {
    auto routes = fetchAdmin(admin_, "/routes");
    int64_t requests = 0, to_target = 0, to_monolith = 0, fallbacks = 0, errors = 0;
    std::string shadow;
    if (routes.ok()) {
      for (const auto& r : (*routes)["routes"]) {
        if (r.value("name", "") != "drivers") continue;
        // The shadow comparisons of the route's current step (the proxy resets them per step).
        if (r.contains("shadow") && r["shadow"].value("compared", 0) > 0) {
          const auto& s = r["shadow"];
          shadow = "; shadow: " + std::to_string(s.value("compared", 0)) + " compared, " +
                   std::to_string(s.value("mismatched", 0)) + " mismatched";
          // A write landing between the two answers shows as a mismatch until the sync catches
          // up: the proxy re-checks each one and says which were only lag.
          if (s.value("mismatched", 0) > 0 && s.contains("mismatched_by")) {
            const auto& by = s["mismatched_by"];
            shadow += " (" + std::to_string(by.value("lag", 0)) + " lag, " +
                      std::to_string(by.value("real", 0) + by.value("unchecked", 0)) + " real, " +
                      std::to_string(by.value("pending", 0)) + " pending)";
          }
          shadow += ", " + std::to_string(s.value("dropped", 0)) + " dropped";
        }
        const auto& c = r["counters"];
        requests = c.value("requests", 0);
        to_target = c.value("to_target", 0);
        to_monolith = c.value("to_monolith", 0);
        fallbacks = c.value("fallbacks", 0);
        errors = c.value("errors_5xx", 0);
      }
    }
    auto status = engine.status();
    std::string lag;
    if (auto live = fetchAdmin(sync_status_url_.substr(0, sync_status_url_.rfind('/')), "/status");
        live.ok() && live->contains("lag_ms") && (*live)["lag_ms"].is_number()) {
      lag = ", lag " + std::to_string((*live)["lag_ms"].get<int64_t>()) + " ms";
    }
    std::printf(
        "  [%s] drivers route: +%lld requests (+%lld to driver-service, +%lld to monolith, "
        "+%lld fallbacks, +%lld 5xx)%s; sync %s, %lld pending%s\n",
        label.c_str(), static_cast<long long>(requests - last_.requests),
        static_cast<long long>(to_target - last_.to_target),
        static_cast<long long>(to_monolith - last_.to_monolith),
        static_cast<long long>(fallbacks - last_.fallbacks),
        static_cast<long long>(errors - last_.errors), shadow.c_str(),
        status.ok() ? acl::sync::toString(status->direction) : "?",
        static_cast<long long>(status.ok() ? status->pending_changes : -1), lag.c_str());
    if (!shadow.empty() && shadow.find(" 0 mismatched") == std::string::npos) {
      // Show what differed, as the dashboard and GET /diffs do.
      if (auto diffs = fetchAdmin(admin_, "/diffs?route=drivers");
          diffs.ok() && !(*diffs)["diffs"].empty()) {
        const auto& latest = (*diffs)["diffs"][0];
        std::printf(
            "    latest mismatch: %s %s differs at %s, class %s (see %s/diffs?route=drivers)\n",
            latest.value("method", "").c_str(), latest.value("path", "").c_str(),
            latest["differences"].dump().c_str(), latest.value("class", "?").c_str(),
            admin_.c_str());
      }
    }
    std::fflush(stdout);
    last_ = {requests, to_target, to_monolith, fallbacks, errors};
  }

  void pause(std::chrono::milliseconds duration) {
    const auto until = std::chrono::steady_clock::now() + duration;
    while (std::chrono::steady_clock::now() < until) {
      if (g_interrupted) throw std::runtime_error("interrupted");
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
  }

  template <typename Pred>
  void waitFor(Pred ready, const std::string& what) {
    const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(60);
    while (!ready()) {
      if (g_interrupted) throw std::runtime_error("interrupted");
      if (std::chrono::steady_clock::now() > until)
        throw std::runtime_error("timed out waiting for " + what);
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
  }

  struct Counters {
    int64_t requests = 0, to_target = 0, to_monolith = 0, fallbacks = 0, errors = 0;
  };
  DemoArgs args_;
  std::string config_;
  std::string admin_;
  std::string sync_status_url_;
  Counters last_;
};

}  // namespace

void registerDemoCommand(CLI::App& app, GlobalOptions& global, Action& action) {
  auto args = std::make_shared<DemoArgs>();
  auto* demo = app.add_subcommand("demo", "the side-by-side demo: migrate the drivers route, live");
  demo->add_option("--workdir", args->workdir,
                   "folder for the databases and config (default: a new temp folder)");
  demo->add_flag("--fast", args->fast, "short steps and a small data set (for tests)");
  demo->add_flag("--keep-running", args->keep_running,
                 "leave everything up afterwards, until Ctrl-C");
  demo->footer("\nExample:\n  strangler demo --keep-running\n");
  demo->callback([&action, &global, args] {
    (void)global;
    action = [args] {
      std::signal(SIGINT, onInterrupt);
      std::signal(SIGTERM, onInterrupt);
      try {
        return Demo(*args).run();
      } catch (const std::exception& e) {
        std::cerr << "strangler demo: " << e.what() << "\n";
        return 1;
      }
    };
  });
}

}  // namespace strangler::cli
