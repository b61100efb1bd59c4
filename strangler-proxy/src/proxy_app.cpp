#include "strangler/proxy/proxy_app.h"

#include <cstdlib>
#include <thread>

#include "strangler/proxy/admin_server.h"

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
  ++reloads_ok_;
  return version_;
}

void ProxyApp::stop(std::chrono::milliseconds grace) {
  if (admin_) admin_->stop();
  if (server_) server_->stop(grace);
}

common::HostPort ProxyApp::proxyAddress() const {
  return server_->address();
}
common::HostPort ProxyApp::adminAddress() const {
  return admin_->address();
}

}  // namespace strangler::proxy
