#include "strangler/proxy/proxy_app.h"

#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <set>
#include <thread>

#include <iostream>

#include <nlohmann/json.hpp>

#include "strangler/common/etcd_client.h"
#include "strangler/proxy/admin_server.h"
#include "strangler/proxy/config_file.h"
#include "strangler/proxy/replica_set.h"
#include "strangler/proxy/shadow_comparator.h"

namespace strangler::proxy {

ProxyApp::ProxyApp() = default;

common::Result<std::unique_ptr<ProxyApp>> ProxyApp::start(const ProxyOptions& options) {
  using R = common::Result<std::unique_ptr<ProxyApp>>;
  auto source = readConfigSource(options.config_path);
  if (!source) return R(source.error());
  auto loaded = ProxyConfig::parse(source->text);
  if (!loaded) return R(loaded.error());
  auto config = std::make_shared<const ProxyConfig>(std::move(loaded).value());

  std::unique_ptr<ProxyApp> app(new ProxyApp());
  app->options_ = options;
  app->version_ = 1;
  if (auto discovery = app->discoveryEtcd(*config); !discovery) return R(discovery.error());
  app->source_.location = options.config_path;
  app->source_.mod_revision = source->mod_revision;
  std::optional<common::EtcdLocation> etcd;
  if (common::isEtcdUrl(options.config_path)) {
    auto parsed = common::parseEtcdUrl(options.config_path);
    if (!parsed) return R(parsed.error());
    etcd = *parsed;
    app->source_.kind = "etcd";
    app->source_.key = etcd->key("config");
  } else {
    app->source_.kind = "file";
  }
  int workers = options.workers.value_or(config->workers);
  if (workers <= 0) workers = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  app->holds_ = std::make_shared<RouteHolds>(static_cast<size_t>(workers));
  auto runtime = app->registry_.build(config, app->version_, app->holds_);
  if (!runtime) return R(runtime.error());

  const common::HostPort admin_address = options.admin_listen.value_or(config->admin.listen);
  if (!common::isLoopbackHost(admin_address.host) && app->adminTokenFor(*config).empty()) {
    return R::failure("insecure_admin",
                      "refusing to serve the admin API on " + admin_address.toString() +
                          " (not loopback) without a token: set admin.token_env and that "
                          "environment variable");
  }
  app->shared_ = std::make_shared<ProxyShared>(*runtime, static_cast<size_t>(workers), app->holds_);
  ShadowLimits shadow_limits;
  shadow_limits.queue = static_cast<size_t>(config->limits.shadow_queue);
  shadow_limits.concurrency = config->limits.shadow_concurrency;
  auto comparator = std::make_shared<ShadowComparator>(shadow_limits);
  // A mismatch is re-checked only while its route is still shadowed and not held by a cutover:
  // afterwards the comparison no longer guides a decision, and a cutover must not share the
  // sync with the re-check's questions. (The comparator is stopped before the app goes.)
  ProxyApp* self = app.get();
  comparator->setRecheckGuard([self](const std::string& route) -> std::string {
    const auto serving = self->current();
    const RouteConfig* now = serving->config->findRoute(route);
    if (now == nullptr || now->stage != Stage::kShadow)
      return "the route left the shadow stage before the sync caught up";
    if (const RouteHold* hold = self->holds().find(route); hold != nullptr && hold->flagged())
      return "a cutover holds the route";
    return "";
  });
  app->shared_->shadow = comparator;
  app->steps_.onPublish(*config, app->figures());
  if (!config->access_log.empty()) {
    auto log = AccessLog::open(config->access_log);
    if (!log) return R(log.error());
    app->shared_->access_log = std::shared_ptr<AccessLog>(std::move(log).value());
  }
  std::optional<common::HostPort> tls_listen;
  if (config->tls) tls_listen = options.tls_listen.value_or(config->tls->listen);
  if (options.tls_listen && !config->tls) {
    return R::failure("tls_not_configured",
                      "--tls-listen needs \"tls\" (cert_file, key_file) in the config");
  }
  auto server = ProxyServer::start(options.listen.value_or(config->listen), workers, app->shared_,
                                   tls_listen);
  if (!server) return R(server.error());
  app->server_ = std::move(server).value();
  auto admin = AdminServer::start(admin_address, *app);
  if (!admin) {
    app->server_->stop(std::chrono::milliseconds(0));
    return R(admin.error());
  }
  app->admin_ = std::move(admin).value();
  app->reloads_ok_ = 0;
  app->guard_ = std::thread([raw = app.get()] { raw->guardLoop(); });
  if (etcd) {
    char host[256] = "localhost";
    ::gethostname(host, sizeof host - 1);
    app->replica_id_ = std::string(host) + "-" + std::to_string(::getpid());
    app->replica_started_ = nowIso8601();
    auto replicas = ReplicaSet::start(*etcd, app->replica_id_,
                                      [raw = app.get()] { return raw->replicaDocument(); });
    if (!replicas) {
      std::cerr << "strangler-proxy: cannot register this replica in etcd: "
                << replicas.error().message << std::endl;
    } else {
      app->replicas_ = std::move(replicas).value();
    }
    // Every new revision of the config key goes through the same validation as a reload.
    auto* raw = app.get();
    app->config_follower_ = std::make_unique<common::EtcdFollower>(
        common::EtcdClient(etcd->endpoints), etcd->key("config"), false,
        [raw](const common::EtcdRange& range) {
          if (range.kvs.empty()) {
            raw->onEtcdConfig(std::nullopt, 0);
          } else {
            raw->onEtcdConfig(range.kvs.front().value, range.kvs.front().mod_revision);
          }
        },
        [raw](const std::string& why) {
          std::lock_guard lock(raw->source_mutex_);
          if (raw->source_.etcd_error.empty())
            std::cerr << "strangler-proxy: etcd: " << why << " (the current config keeps serving)"
                      << std::endl;
          raw->source_.etcd_error = why;
        });
  }
  app->reconcileDiscovery(*config);
  return app;
}

ProxyApp::~ProxyApp() {
  stop(std::chrono::milliseconds(0));
}

std::string ProxyApp::adminTokenFor(const ProxyConfig& config) {
  if (config.admin.token_env.empty()) return "";
  const char* value = std::getenv(config.admin.token_env.c_str());
  return value == nullptr ? "" : value;
}

std::string ProxyApp::adminToken() const {
  return adminTokenFor(*shared_->current()->config);
}

void ProxyApp::reopenLogs() {
  if (shared_->access_log) shared_->access_log->reopen();
}

common::Result<uint64_t> ProxyApp::reload() {
  auto source = readConfigSource(options_.config_path);
  if (!source) {
    ++reloads_failed_;
    std::lock_guard lock(source_mutex_);
    source_.last_error = source.error().message;
    return common::Result<uint64_t>(source.error());
  }
  return applyText(source->text, source->mod_revision);
}

common::Result<uint64_t> ProxyApp::applyText(const std::string& text, int64_t mod_revision) {
  std::unique_lock lock(reload_mutex_);
  {
    // Two readers of etcd (the follower, an admin reload) may race: never go back in time.
    std::lock_guard source_lock(source_mutex_);
    if (mod_revision != 0 && mod_revision < source_.mod_revision) return version_;
  }
  const auto refuse = [&](const common::Error& error) {
    ++reloads_failed_;
    std::lock_guard source_lock(source_mutex_);
    source_.last_error = error.message;
    if (mod_revision != 0) source_.rejected_revision = mod_revision;
    return common::Result<uint64_t>(error);
  };
  auto loaded = ProxyConfig::parse(text);
  if (!loaded) return refuse(loaded.error());
  auto config = std::make_shared<const ProxyConfig>(std::move(loaded).value());
  if (auto discovery = discoveryEtcd(*config); !discovery) return refuse(discovery.error());
  auto runtime = registry_.build(config, version_ + 1, holds_, discovered());
  if (!runtime) return refuse(runtime.error());
  ++version_;
  shared_->publish(*runtime);
  steps_.onPublish(*config, figures());
  ++reloads_ok_;
  {
    std::lock_guard source_lock(source_mutex_);
    source_.last_error.clear();
    if (mod_revision != 0) source_.mod_revision = mod_revision;
  }
  const uint64_t version = version_;
  lock.unlock();
  // Outside the reload lock: a follower being stopped may be waiting for it.
  reconcileDiscovery(*config);
  updateReplica();
  return version;
}

std::string ProxyApp::advertisedAdmin() const {
  if (options_.advertise_admin) return options_.advertise_admin->toString();
  if (!admin_) return "";
  common::HostPort address = admin_->address();
  // Bound to every interface: the others reach this replica by its host name (in Kubernetes,
  // where a Deployment's pod names do not resolve, pass --advertise-admin $(POD_IP):PORT).
  if (address.host == "0.0.0.0" || address.host == "::") {
    char host[256] = "localhost";
    ::gethostname(host, sizeof host - 1);
    address.host = host;
  }
  return address.toString();
}

std::string ProxyApp::replicaDocument() const {
  const auto runtime = current();
  const auto source = configSource();
  nlohmann::json doc = {
      {"id", replica_id_.empty() ? "local" : replica_id_},
      {"listen", server_ ? server_->address().toString() : ""},
      {"tls_listen", server_ && server_->tlsAddress() ? server_->tlsAddress()->toString() : ""},
      {"admin", advertisedAdmin()},
      {"config_revision", source.mod_revision},
      {"version", runtime->version},
      {"config_hash", runtime->config->hash},
      {"status", "serving"},
      {"last_error",
       source.last_error.empty() ? nlohmann::json(nullptr) : nlohmann::json(source.last_error)},
      {"started_at", replica_started_},
      {"updated_at", nowIso8601()}};
  return doc.dump();
}

void ProxyApp::updateReplica() {
  if (replicas_) replicas_->update();
}

std::vector<nlohmann::json> ProxyApp::replicaDocuments() const {
  if (!replicas_) return {nlohmann::json::parse(replicaDocument())};
  return replicas_->documents();
}

common::Result<std::vector<common::HostPort>> ProxyApp::discoveryEtcd(
    const ProxyConfig& config) const {
  using R = common::Result<std::vector<common::HostPort>>;
  std::string upstream;
  for (const auto& [name, u] : config.upstreams) {
    if (!u.discovery_prefix.empty()) upstream = name;
  }
  if (upstream.empty()) return std::vector<common::HostPort>();
  if (!config.etcd.empty()) return common::parseEtcdEndpoints(config.etcd);
  if (common::isEtcdUrl(options_.config_path)) {
    auto location = common::parseEtcdUrl(options_.config_path);
    if (!location) return location.error();
    return location->endpoints;
  }
  return R::failure("invalid_config",
                    "upstreams." + upstream +
                        ".discovery: needs etcd: serve the config from etcd (--config etcd://...) "
                        "or name the members in the top-level \"etcd\" key");
}

std::map<std::string, std::vector<common::HostPort>> ProxyApp::discovered() const {
  std::lock_guard lock(discovered_mutex_);
  return discovered_;
}

void ProxyApp::reconcileDiscovery(const ProxyConfig& config) {
  auto members = discoveryEtcd(config);
  if (!members) return;
  std::string members_text;
  for (const auto& m : *members)
    members_text += m.toString() + ",";
  std::set<std::string> wanted;
  for (const auto& [name, upstream] : config.upstreams) {
    if (!upstream.discovery_prefix.empty()) wanted.insert(upstream.discovery_prefix);
  }
  std::lock_guard lock(discovery_mutex_);
  if (discovery_stopped_) return;
  if (members_text != discovery_members_) {
    discovery_followers_.clear();  // other members: follow again from there
    discovery_members_ = members_text;
  }
  for (auto it = discovery_followers_.begin(); it != discovery_followers_.end();) {
    if (wanted.count(it->first)) {
      ++it;
      continue;
    }
    it = discovery_followers_.erase(it);
  }
  for (const auto& prefix : wanted) {
    if (discovery_followers_.count(prefix)) continue;
    discovery_followers_[prefix] = std::make_unique<common::EtcdFollower>(
        common::EtcdClient(*members), prefix + "/", true,
        [this, prefix](const common::EtcdRange& range) {
          std::vector<common::HostPort> instances;
          for (const auto& kv : range.kvs) {
            std::string address = kv.value;
            const auto doc = nlohmann::json::parse(kv.value, nullptr, false);
            if (!doc.is_discarded() && doc.is_object()) address = doc.value("address", "");
            auto parsed = common::parseHostPort(address);
            if (parsed && parsed->port != 0) instances.push_back(*parsed);
          }
          onDiscovery(prefix, instances);
        },
        [prefix](const std::string& why) {
          std::cerr << "strangler-proxy: discovery " << prefix << ": " << why << std::endl;
        });
  }
}

void ProxyApp::onDiscovery(const std::string& prefix,
                           const std::vector<common::HostPort>& instances) {
  auto sorted = instances;
  std::sort(sorted.begin(), sorted.end(),
            [](const auto& a, const auto& b) { return a.toString() < b.toString(); });
  {
    std::lock_guard lock(discovered_mutex_);
    const bool seen = discovered_.count(prefix) > 0;
    auto& known = discovered_[prefix];
    const auto same = [](const auto& a, const auto& b) {
      if (a.size() != b.size()) return false;
      for (size_t i = 0; i < a.size(); ++i) {
        if (a[i].toString() != b[i].toString()) return false;
      }
      return true;
    };
    if (seen && same(known, sorted)) return;
    known = sorted;
  }
  std::lock_guard lock(reload_mutex_);
  const auto config = shared_->current()->config;
  auto runtime = registry_.build(config, version_ + 1, holds_, discovered());
  if (!runtime) {
    std::cerr << "strangler-proxy: discovery " << prefix << ": " << runtime.error().message
              << std::endl;
    return;
  }
  ++version_;
  shared_->publish(*runtime);
  std::cout << "strangler-proxy discovery " << prefix << ": " << sorted.size()
            << " instance(s) (version " << version_ << ")" << std::endl;
  updateReplica();
}

void ProxyApp::onEtcdConfig(const std::optional<std::string>& text, int64_t mod_revision) {
  {
    std::lock_guard lock(source_mutex_);
    if (!text) {
      source_.etcd_error = "etcd has no config at " + source_.key;
      return;
    }
    source_.etcd_error.clear();
    if (mod_revision == source_.mod_revision || mod_revision == source_.rejected_revision) return;
  }
  auto applied = applyText(*text, mod_revision);
  if (applied) {
    std::cout << "strangler-proxy applied config revision " << mod_revision
              << " from etcd (version " << *applied << ")" << std::endl;
  } else {
    std::cout << "strangler-proxy refused config revision " << mod_revision
              << " from etcd, previous config kept:\n"
              << applied.error().message << std::endl;
  }
}

ConfigSourceStatus ProxyApp::configSource() const {
  std::lock_guard lock(source_mutex_);
  return source_;
}

void ProxyApp::stop(std::chrono::milliseconds grace) {
  if (config_follower_) config_follower_->stop();
  {
    std::lock_guard lock(discovery_mutex_);
    discovery_stopped_ = true;
    discovery_followers_.clear();
  }
  if (replicas_) replicas_->stop();  // deregisters this replica at once
  {
    std::lock_guard lock(guard_mutex_);
    guard_stop_ = true;
  }
  guard_wake_.notify_all();
  if (guard_.joinable()) guard_.join();
  if (admin_) admin_->stop();
  if (server_) server_->stop(grace);
  if (shared_) shared_->shadow->stop();
}

void ProxyApp::reresolveTick() {
  const auto config = shared_->current()->config;
  const auto changed = registry_.reresolve(*config, std::chrono::steady_clock::now());
  if (changed.empty()) return;
  std::lock_guard lock(reload_mutex_);
  auto runtime = registry_.build(shared_->current()->config, version_ + 1, holds_, discovered());
  if (!runtime) {
    std::cerr << "strangler-proxy: re-resolving endpoints: " << runtime.error().message
              << std::endl;
    return;
  }
  ++version_;
  shared_->publish(*runtime);
  for (const auto& key : changed)
    std::cout << "strangler-proxy endpoint " << key << " resolved to a new address (version "
              << version_ << ")" << std::endl;
  updateReplica();
}

void ProxyApp::guardLoop() {
  std::unique_lock lock(guard_mutex_);
  while (!guard_wake_.wait_for(lock, options_.guard_period, [this] { return guard_stop_; })) {
    lock.unlock();
    try {
      guardTick();
    } catch (const std::exception& error) {
      std::cerr << "strangler-proxy: canary guard: " << error.what() << std::endl;
    }
    reresolveTick();
    lock.lock();
  }
}

void ProxyApp::guardTick() {
  const auto runtime = current();
  const bool guarded = std::any_of(
      runtime->config->routes.begin(), runtime->config->routes.end(),
      [](const RouteConfig& r) { return r.stage == Stage::kCanary && r.gates.auto_rollback; });
  // One replica decides for all (the etcd decider), on every replica's figures summed.
  if (!guarded || (replicas_ && !replicas_->isDecider())) return;
  const ClusterFigures cluster = clusterFigures(figures());
  for (const auto& route : runtime->config->routes) {
    if (route.stage != Stage::kCanary || !route.gates.auto_rollback) continue;
    const auto summed = cluster.routes.find(route.name);
    if (summed == cluster.routes.end()) continue;
    const RouteFigures& step = summed->second.step;
    const auto samples = step.target.requests;
    if (samples == 0 || static_cast<int64_t>(samples) < route.gates.min_samples) continue;
    const double rate = step.target.errorRate();
    if (rate <= route.gates.max_error_rate) continue;

    const PlanStep current{Stage::kCanary, route.percent};
    const PlanStep back = previousStep(route.effectivePlan(), current);
    char reason[240];
    std::snprintf(reason, sizeof reason,
                  "target error rate %.4f > gate %.4f over %llu requests in %s (%zu replica%s)",
                  rate, route.gates.max_error_rate, static_cast<unsigned long long>(samples),
                  describeStep(current).c_str(), summed->second.counted.size(),
                  summed->second.counted.size() == 1 ? "" : "s");
    {
      auto store = ConfigStore::open(options_.config_path);  // holds the file lock until done
      if (!store) {
        // Said once per cause, not every tick (a config on a read-only mount fails them all).
        const std::string why = route.name + ": " + store.error().message;
        if (why != guard_last_error_) {
          std::cerr << "strangler-proxy: canary guard cannot roll back " << why
                    << (common::isEtcdUrl(options_.config_path)
                            ? ""
                            : " (the guard writes its rollbacks into the config: keep it where "
                              "the proxy can write, or in etcd)")
                    << std::endl;
          guard_last_error_ = why;
        }
        continue;
      }
      guard_last_error_.clear();
      if (replicas_) {
        const auto [key, value] = replicas_->fence();
        store->requireKey(key, value);
      }
      auto* raw = store->route(route.name);
      // Only when the file still says what this proxy serves: an operator's newer edit wins.
      if (raw == nullptr || raw->value("stage", "") != "canary" ||
          raw->value("percent", 0) != route.percent)
        continue;
      const auto before = stageOf(*raw);
      (*raw)["stage"] = stageName(back.stage);
      if (back.stage == Stage::kCanary) {
        (*raw)["percent"] = back.percent;
      } else {
        raw->erase("percent");
      }
      JournalEntry entry{nowIso8601(),
                         route.name,
                         "rollback",
                         before,
                         stageOf(*raw),
                         "strangler-proxy",
                         {{"automatic", true}, {"reason", reason}}};
      if (auto committed = store->commit(entry); !committed) {
        std::cerr << "strangler-proxy: canary guard cannot roll back " << route.name << ": "
                  << committed.error().message << std::endl;
        continue;
      }
    }
    std::cerr << "strangler-proxy: auto-rollback of route " << route.name << ": "
              << describeStep(current) << " -> " << describeStep(back) << " (" << reason << ")"
              << std::endl;
    if (auto reloaded = reload(); !reloaded) {
      std::cerr << "strangler-proxy: reload after auto-rollback failed: "
                << reloaded.error().message << std::endl;
    }
    return;  // the next tick judges the new snapshot
  }
}

std::map<std::string, RouteFigures> ProxyApp::figures() {
  const auto runtime = shared_->current();
  return routeFigures(shared_->metrics.totals(), *runtime->config, *shared_->shadow);
}

common::HostPort ProxyApp::proxyAddress() const {
  return server_->address();
}
std::optional<common::HostPort> ProxyApp::tlsAddress() const {
  return server_->tlsAddress();
}
common::HostPort ProxyApp::adminAddress() const {
  return admin_->address();
}

}  // namespace strangler::proxy
