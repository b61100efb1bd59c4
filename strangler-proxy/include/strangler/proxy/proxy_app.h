#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>

#include "strangler/common/host_port.h"
#include "strangler/common/result.h"
#include "strangler/proxy/proxy_server.h"
#include "strangler/proxy/route_figures.h"
#include "strangler/proxy/runtime.h"

namespace strangler::proxy {

class AdminServer;

/// Command-line settings; listen addresses and workers override the config's.
struct ProxyOptions {
  std::string config_path;
  std::optional<common::HostPort> listen;
  std::optional<common::HostPort> admin_listen;
  std::optional<int> workers;
  /// How often the canary guard checks the gates (auto-rollback).
  std::chrono::milliseconds guard_period{500};
};

/// The running proxy: data path, admin API and the config they share, with hot reload.
class ProxyApp {
 public:
  /// Loads the config and starts the data path and the admin API. Refuses to start when the
  /// config is invalid or the admin API would listen beyond loopback without a token.
  static common::Result<std::unique_ptr<ProxyApp>> start(const ProxyOptions& options);
  ~ProxyApp();
  ProxyApp(const ProxyApp&) = delete;
  ProxyApp& operator=(const ProxyApp&) = delete;

  /// Re-reads the config file; on success the new snapshot serves new requests and its
  /// version is returned, on failure the old one keeps serving. Thread-safe.
  common::Result<uint64_t> reload();
  /// Stops the admin API, lets requests in flight finish (up to `grace`), stops the loops.
  void stop(std::chrono::milliseconds grace);

  /// The address the data path listens on.
  common::HostPort proxyAddress() const;
  /// The address the admin API listens on.
  common::HostPort adminAddress() const;
  /// The snapshot new requests use.
  std::shared_ptr<const Runtime> current() const { return shared_->current(); }
  ProxyShared& shared() { return *shared_; }
  UpstreamRegistry& registry() { return registry_; }
  /// The admin token (value of the env var admin.token_env names); empty when none.
  std::string adminToken() const;
  uint64_t reloadsSucceeded() const { return reloads_ok_.load(); }
  uint64_t reloadsFailed() const { return reloads_failed_.load(); }
  /// Every route's figures since the proxy started.
  std::map<std::string, RouteFigures> figures();
  /// Each route's figures since it entered its current step, with the step's start (epoch ms).
  const StepTracker& steps() const { return steps_; }

 private:
  ProxyApp() = default;
  static std::string adminTokenFor(const ProxyConfig& config);

  ProxyOptions options_;
  UpstreamRegistry registry_;
  std::shared_ptr<ProxyShared> shared_;
  std::unique_ptr<ProxyServer> server_;
  std::unique_ptr<AdminServer> admin_;
  std::mutex reload_mutex_;
  uint64_t version_ = 0;
  std::atomic<uint64_t> reloads_ok_{0};
  std::atomic<uint64_t> reloads_failed_{0};
  StepTracker steps_;

  // The canary guard: steps a canary back (in the file, journaled, then reloaded) when the
  // target's error rate in the current step crosses the route's gate.
  void guardLoop();
  void guardTick();
  std::thread guard_;
  std::mutex guard_mutex_;
  std::condition_variable guard_wake_;
  bool guard_stop_ = false;
};

}  // namespace strangler::proxy
