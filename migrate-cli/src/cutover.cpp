#include "cutover.h"

#include <chrono>
#include <iostream>
#include <regex>
#include <sstream>
#include <thread>

#include "config_store.h"
#include "strangler/acl/sync_engine.h"
#include "strangler/common/etcd_client.h"
#include "strangler/proxy/config.h"

namespace strangler::cli {
namespace {

using nlohmann::json;
using nlohmann::ordered_json;
namespace sync = acl::sync;
using Clock = std::chrono::steady_clock;

int refuse(const std::string& message) {
  std::cerr << "strangler: " << message << "\n";
  return 1;
}

int64_t msSince(Clock::time_point start) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - start).count();
}

std::string redactPassword(const std::string& connection) {
  static const std::regex password(R"((password=)[^ ]*|(://[^:/@]+:)[^@]*@)");
  return std::regex_replace(connection, password, "$1$2***@");
}

/// Every proxy replica's admin URL: the replicas registered in etcd for an etcd config, else
/// --admin (comma-separated for several), else the config's admin.listen.
common::Result<std::vector<std::string>> replicaAdmins(const GlobalOptions& global,
                                                       const proxy::ProxyConfig& config) {
  std::vector<std::string> admins;
  if (!global.admin.empty()) {
    std::stringstream in(global.admin);
    std::string url;
    while (std::getline(in, url, ','))
      if (!url.empty()) admins.push_back(url);
    return admins;
  }
  if (common::isEtcdUrl(global.config)) {
    auto location = common::parseEtcdUrl(global.config);
    if (!location.ok()) return location.error();
    common::EtcdClient etcd(location->endpoints);
    auto found = etcd.getPrefix(location->key("replicas/"));
    if (!found.ok()) return found.error();
    for (const auto& kv : found->kvs) {
      auto doc = json::parse(kv.value, nullptr, false);
      if (doc.is_object() && !doc.value("admin", "").empty())
        admins.push_back("http://" + doc.value("admin", ""));
    }
    if (admins.empty())
      return common::Error{"refused", "no proxy replica is registered under the etcd prefix"};
    return admins;
  }
  admins.push_back("http://" + config.admin.listen.toString());
  return admins;
}

/// One cutover run; the members are what an undo needs.
class Cutover {
 public:
  Cutover(const GlobalOptions& global, const CutoverRequest& request)
      : global_(global), request_(request) {}

  int run();

 private:
  int fail(const std::string& why);
  common::Result<void> hold();
  void release();
  common::Result<void> switchRoute(const ordered_json& step, const std::string& action,
                                   const ordered_json& extra);
  common::Result<void> waitServing(const ordered_json& step);
  bool expired() const { return Clock::now() > deadline_; }

  const GlobalOptions& global_;
  const CutoverRequest& request_;
  ordered_json config_json_;
  std::vector<std::string> admins_;
  std::vector<std::string> held_;
  std::unique_ptr<sync::SyncEngine> engine_;
  sync::Direction old_owner_ = sync::Direction::kForward;
  bool owner_changed_ = false;
  ordered_json before_step_;
  bool route_switched_ = false;
  Clock::time_point deadline_;
  int64_t write_pause_ms_ = 0;
  int64_t held_requests_ = 0;
};

int Cutover::fail(const std::string& why) {
  std::string undone;
  if (route_switched_) {
    route_switched_ = false;  // the undo below is not itself undone
    auto back = switchRoute(before_step_, "rollback", ordered_json{{"undo", "cutover failed"}});
    undone += back.ok() ? "; the route is back at " + before_step_.dump()
                        : "; putting the route back failed too: " + back.error().message;
  }
  if (owner_changed_) {
    auto back = engine_->setOwner(old_owner_, "undone: " + why);
    undone += back.ok() ? "; the data's owner is unchanged"
                        : "; giving ownership back failed too: " + back.error().message;
  }
  const bool held = !held_.empty();
  release();
  if (held) undone += "; the hold is released";
  return refuse("cutover of route '" + request_.route + "' refused: " + why + undone);
}

common::Result<void> Cutover::hold() {
  // Long enough for this run; short enough that a killed run's hold does not linger.
  const int hold_ms = std::min(60000, request_.timeout_ms + 2000);
  const std::string body = json{{"hold_ms", hold_ms}}.dump();
  for (const auto& admin : admins_) {
    auto answer =
        callAdmin(admin, "POST", "/routes/" + request_.route + "/hold", config_json_, body);
    if (!answer.ok())
      return common::Error{"refused", "replica " + admin + " did not hold the route's writes (" +
                                          answer.error().message + ")"};
    held_.push_back(admin);
  }
  return {};
}

void Cutover::release() {
  for (const auto& admin : held_) {
    auto answer =
        callAdmin(admin, "DELETE", "/routes/" + request_.route + "/hold", config_json_, "");
    if (!answer.ok()) {
      // The hold expires by itself; say so rather than fail a finished cutover.
      std::cerr << "strangler: releasing the hold on " << admin
                << " failed (it expires by itself): " << answer.error().message << "\n";
      continue;
    }
    write_pause_ms_ = std::max<int64_t>(write_pause_ms_, answer->value("max_held_ms", 0));
    held_requests_ += answer->value("released", 0);
  }
  held_.clear();
}

common::Result<void> Cutover::switchRoute(const ordered_json& step, const std::string& action,
                                          const ordered_json& extra) {
  for (int attempt = 0; attempt < 20; ++attempt) {
    auto store = ConfigStore::open(global_.config);
    if (!store.ok()) return store.error();
    ordered_json* route = store->route(request_.route);
    if (route == nullptr) return common::Error{"refused", "the route disappeared"};
    const ordered_json before = stageOf(*route);
    (*route)["stage"] = step.value("stage", "monolith");
    if (step.contains("percent")) {
      (*route)["percent"] = step["percent"];
    } else {
      route->erase("percent");
    }
    (*route)["data"] = request_.mapping;
    if (before == stageOf(*route)) return waitServing(step);
    auto committed = store->commit(
        {nowIso8601(), request_.route, action, before, stageOf(*route), whoAmI(), extra});
    if (!committed.ok() && committed.error().code == "conflict") continue;
    if (!committed.ok()) return committed.error();
    config_json_ = store->json();
    route_switched_ = true;
    if (!common::isEtcdUrl(global_.config)) {
      for (const auto& admin : admins_) {
        auto reloaded = reloadProxy(admin, store->json());
        if (!reloaded.ok()) return reloaded.error();
      }
    }
    return waitServing(step);
  }
  return common::Error{"conflict", "the config kept changing under the cutover"};
}

// Every replica serves the route at `step` (an etcd config reaches them by their watch).
common::Result<void> Cutover::waitServing(const ordered_json& step) {
  const std::string stage = step.value("stage", "monolith");
  for (const auto& admin : admins_) {
    for (;;) {
      auto live = fetchAdmin(admin, "/routes");
      bool serving = false;
      if (live.ok()) {
        for (const auto& r : live->value("routes", json::array()))
          if (r.value("name", "") == request_.route && r.value("stage", "") == stage &&
              (!step.contains("percent") || r.value("percent", 0) == step.value("percent", 0)))
            serving = true;
      }
      if (serving) break;
      if (expired())
        return common::Error{"timeout", "replica " + admin + " did not switch the route in time"};
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
  }
  return {};
}

int Cutover::run() {
  const auto started = Clock::now();
  deadline_ = started + std::chrono::milliseconds(request_.timeout_ms);
  // Everything is checked before anything changes.
  {
    auto store = ConfigStore::open(global_.config);
    if (!store.ok()) return refuse(store.error().message);
    ordered_json* route = store->route(request_.route);
    if (route == nullptr)
      return refuse("no route named '" + request_.route + "' in " + global_.config);
    if (route->value("target", "").empty())
      return refuse("route '" + request_.route + "' has no target upstream");
    before_step_ = stageOf(*route);
    config_json_ = store->json();
  }
  auto config = proxy::ProxyConfig::create(json::parse(config_json_.dump()));
  if (!config.ok()) return refuse(config.error().message);
  auto admins = replicaAdmins(global_, *config);
  if (!admins.ok()) return refuse(admins.error().message);
  admins_ = *admins;
  auto engine = sync::SyncEngine::open(request_.from_db, request_.to_db, request_.mapping);
  if (!engine.ok()) return refuse("the sync cannot open: " + engine.error().message);
  engine_ = std::move(engine).value();
  auto owner = engine_->owner();
  if (!owner.ok()) return refuse(owner.error().message);
  old_owner_ = *owner;
  const sync::Direction wanted =
      request_.to_service ? sync::Direction::kReverse : sync::Direction::kForward;
  auto lease = engine_->lease();
  if (!lease.ok()) return refuse(lease.error().message);
  if (!lease->has_value())
    return refuse("the sync of mapping '" + request_.mapping +
                  "' is not running: start `strangler sync watch --from … --to …` first (the "
                  "cutover waits for it to apply every change up to the fence)");
  for (const auto& admin : admins_) {
    auto probe = fetchAdmin(admin, "/routes/" + request_.route + "/hold");
    if (!probe.ok())
      return refuse("proxy replica " + admin + " cannot hold the route: " + probe.error().message);
  }
  const ordered_json target_step = request_.step;
  if (old_owner_ == wanted && before_step_ == target_step) {
    // An interrupted run may have left its hold: let the held writes go now.
    held_ = admins_;
    release();
    std::cout << "route " << request_.route << " is already " << target_step.dump() << " with the "
              << (request_.to_service ? "service" : "monolith")
              << " owning its data: nothing to do\n";
    return 0;
  }

  // 1. fence
  if (auto held = hold(); !held.ok()) return fail(held.error().message);
  for (const auto& admin : admins_) {
    for (;;) {
      auto state = fetchAdmin(admin, "/routes/" + request_.route + "/hold");
      if (state.ok() && state->value("held", false) && state->value("in_flight_unsafe", 1) == 0)
        break;
      if (state.ok() && !state->value("held", false))
        return fail("replica " + admin + " lost the hold");
      if (expired()) return fail("writes in flight on " + admin + " did not finish in time");
      std::this_thread::sleep_for(std::chrono::milliseconds(2));
    }
  }
  const int64_t fenced_ms = msSince(started);
  // 2. drain
  auto fence = engine_->positions();
  if (!fence.ok()) return fail(fence.error().message);
  auto first = engine_->backlog(*fence);
  if (!first.ok()) return fail(first.error().message);
  const sync::Backlog drained = *first;
  for (auto backlog = first; !backlog->empty();) {
    if (expired())
      return fail("the sync did not apply the changes up to the fence in time (" +
                  std::to_string(backlog->forward) + " monolith, " +
                  std::to_string(backlog->reverse) + " service changes left)");
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
    backlog = engine_->backlog(*fence);
    if (!backlog.ok()) return fail(backlog.error().message);
  }
  const std::string fence_text = "monolith " + fence->monolith + " service " + fence->service;
  // 3. flip
  if (old_owner_ != wanted) {
    auto flipped = engine_->setOwner(wanted, fence_text);
    if (!flipped.ok()) return fail(flipped.error().message);
    owner_changed_ = true;
  }
  // 4. switch
  ordered_json extra{{"data",
                      {{"mapping", request_.mapping},
                       {"from", redactPassword(request_.from_db)},
                       {"to", redactPassword(request_.to_db)}}},
                     {"cutover",
                      {{"fence", fence_text},
                       {"drained", drained.forward + drained.reverse},
                       {"owner", request_.to_service ? "service" : "monolith"}}}};
  if (auto switched = switchRoute(target_step, request_.action, extra); !switched.ok())
    return fail(switched.error().message);
  // 5. release
  release();
  const int64_t elapsed = msSince(started);
  const json report{{"route", request_.route},
                    {"from", before_step_},
                    {"to", target_step},
                    {"owner", request_.to_service ? "service" : "monolith"},
                    {"fence", {{"monolith", fence->monolith}, {"service", fence->service}}},
                    {"drained", {{"forward", drained.forward}, {"reverse", drained.reverse}}},
                    {"write_pause_ms", write_pause_ms_},
                    {"held_requests", held_requests_},
                    {"replicas", admins_.size()},
                    {"fenced_after_ms", fenced_ms},
                    {"elapsed_ms", elapsed}};
  if (request_.json_output) {
    std::cout << report.dump() << "\n";
  } else {
    std::cout << "route " << request_.route << ": " << before_step_.dump() << " -> "
              << target_step.dump() << " with its data (the "
              << (request_.to_service ? "service" : "monolith") << " owns writes)\n"
              << "  fence: " << fence_text << "; drained " << drained.forward << " monolith and "
              << drained.reverse << " service changes\n"
              << "  write pause " << write_pause_ms_ << " ms (" << held_requests_
              << " requests held) on " << admins_.size() << " replica(s); " << elapsed
              << " ms in all\n";
  }
  return 0;
}

}  // namespace

int runCutover(const GlobalOptions& global, const CutoverRequest& request) {
  Cutover cutover(global, request);
  return cutover.run();
}

}  // namespace strangler::cli
