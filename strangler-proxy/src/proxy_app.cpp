#include "strangler/proxy/proxy_app.h"

#include <cstdlib>
#include <thread>

#include <iostream>

#include "strangler/proxy/admin_server.h"
#include "strangler/proxy/config_file.h"
#include "strangler/proxy/shadow_comparator.h"

namespace strangler::proxy {

common::Result<std::unique_ptr<ProxyApp>> ProxyApp::start(const ProxyOptions& options) {
  using R = common::Result<std::unique_ptr<ProxyApp>>;
  auto loaded = ProxyConfig::load(options.config_path);
  if (!loaded) return R(loaded.error());
  auto config = std::make_shared<const ProxyConfig>(std::move(loaded).value());

  std::unique_ptr<ProxyApp> app(new ProxyApp());
  app->options_ = options;
  app->version_ = 1;
  auto runtime = app->registry_.build(config, app->version_);
  if (!runtime) return R(runtime.error());

  const common::HostPort admin_address = options.admin_listen.value_or(config->admin.listen);
  if (!common::isLoopbackHost(admin_address.host) && app->adminTokenFor(*config).empty()) {
    return R::failure("insecure_admin",
                      "refusing to serve the admin API on " + admin_address.toString() +
                          " (not loopback) without a token: set admin.token_env and that "
                          "environment variable");
  }
  int workers = options.workers.value_or(config->workers);
  if (workers <= 0) workers = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));

  app->shared_ = std::make_shared<ProxyShared>(*runtime, static_cast<size_t>(workers));
  ShadowLimits shadow_limits;
  shadow_limits.queue = static_cast<size_t>(config->limits.shadow_queue);
  shadow_limits.concurrency = config->limits.shadow_concurrency;
  app->shared_->shadow = std::make_shared<ShadowComparator>(shadow_limits);
  app->steps_.onPublish(*config, app->figures());
  if (!config->access_log.empty()) {
    auto log = AccessLog::open(config->access_log);
    if (!log) return R(log.error());
    app->shared_->access_log = std::shared_ptr<AccessLog>(std::move(log).value());
  }
  auto server = ProxyServer::start(options.listen.value_or(config->listen), workers, app->shared_);
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

common::Result<uint64_t> ProxyApp::reload() {
  std::lock_guard lock(reload_mutex_);
  auto loaded = ProxyConfig::load(options_.config_path);
  if (!loaded) {
    ++reloads_failed_;
    return common::Result<uint64_t>(loaded.error());
  }
  auto config = std::make_shared<const ProxyConfig>(std::move(loaded).value());
  auto runtime = registry_.build(config, version_ + 1);
  if (!runtime) {
    ++reloads_failed_;
    return common::Result<uint64_t>(runtime.error());
  }
  ++version_;
  shared_->publish(*runtime);
  steps_.onPublish(*config, figures());
  ++reloads_ok_;
  return version_;
}

void ProxyApp::stop(std::chrono::milliseconds grace) {
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

void ProxyApp::guardLoop() {
  std::unique_lock lock(guard_mutex_);
  while (!guard_wake_.wait_for(lock, options_.guard_period, [this] { return guard_stop_; })) {
    lock.unlock();
    try {
      guardTick();
    } catch (const std::exception& error) {
      std::cerr << "strangler-proxy: canary guard: " << error.what() << std::endl;
    }
    lock.lock();
  }
}

void ProxyApp::guardTick() {
  const auto runtime = current();
  const auto now = figures();
  for (const auto& route : runtime->config->routes) {
    if (route.stage != Stage::kCanary || !route.gates.auto_rollback) continue;
    const auto [step, since_ms] = steps_.sinceStep(route.name, now);
    const auto samples = step.target.requests;
    if (samples == 0 || static_cast<int64_t>(samples) < route.gates.min_samples) continue;
    const double rate = step.target.errorRate();
    if (rate <= route.gates.max_error_rate) continue;

    const PlanStep current{Stage::kCanary, route.percent};
    const PlanStep back = previousStep(route.effectivePlan(), current);
    char reason[200];
    std::snprintf(reason, sizeof reason,
                  "target error rate %.4f > gate %.4f over %llu requests in %s", rate,
                  route.gates.max_error_rate, static_cast<unsigned long long>(samples),
                  describeStep(current).c_str());
    {
      auto store = ConfigStore::open(options_.config_path);  // holds the file lock until done
      if (!store) {
        std::cerr << "strangler-proxy: canary guard cannot roll back " << route.name << ": "
                  << store.error().message << std::endl;
        continue;
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
common::HostPort ProxyApp::adminAddress() const {
  return admin_->address();
}

}  // namespace strangler::proxy
