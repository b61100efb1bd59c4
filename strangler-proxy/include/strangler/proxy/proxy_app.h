#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

#include "strangler/common/host_port.h"
#include "strangler/common/result.h"
#include "strangler/proxy/proxy_server.h"
#include "strangler/proxy/route_figures.h"
#include "strangler/proxy/runtime.h"

namespace strangler::proxy {

class AdminServer;
class ReplicaSet;
}  // namespace strangler::proxy

namespace strangler::common {
class EtcdFollower;
class EtcdLeaseKeeper;
}  // namespace strangler::common

namespace strangler::proxy {

/// Where the config comes from and how its last changes went (GET /routes, "config_source").
struct ConfigSourceStatus {
  std::string kind;               ///< "file" or "etcd"
  std::string location;           ///< the file path or the etcd URL
  std::string key;                ///< etcd: the key holding the document
  int64_t mod_revision = 0;       ///< etcd: the revision of the document serving
  int64_t rejected_revision = 0;  ///< etcd: the last revision refused, 0 when none
  std::string last_error;         ///< why the last change was refused; empty after a success
  std::string etcd_error;         ///< etcd: why etcd cannot be read right now; empty when it can
};

/// A route's figures of its current step, summed over the replicas serving that same step.
struct ClusterRoute {
  RouteFigures step;
  int64_t since_ms = 0;              ///< the step's earliest start among the replicas counted
  std::vector<std::string> counted;  ///< the replicas summed
  /// [{"replica", "reason"}]: registered replicas left out (no answer, another step).
  nlohmann::json not_counted = nlohmann::json::array();
};

/// What GET /routes, the gates and the guard judge: with an etcd config, every live replica's
/// figures; with a file, this proxy's.
struct ClusterFigures {
  bool across_replicas = false;
  std::map<std::string, ClusterRoute> routes;
  /// Each replica alone: id, admin, answered (or error), version, config_revision, and per
  /// route its stage and step figures.
  nlohmann::json replicas = nlohmann::json::array();
};

/// Command-line settings; listen addresses and workers override the config's.
struct ProxyOptions {
  std::string config_path;
  std::optional<common::HostPort> listen;
  std::optional<common::HostPort> tls_listen;  ///< overrides tls.listen (needs "tls")
  std::optional<common::HostPort> admin_listen;
  /// Where other replicas reach this one's admin API (registered in etcd).
  std::optional<common::HostPort> advertise_admin;
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

  /// Re-reads the config (file or etcd); on success the new snapshot serves new requests and
  /// its version is returned, on failure the old one keeps serving. Thread-safe.
  common::Result<uint64_t> reload();
  /// Opens the access log file again (SIGUSR1, after a rotation moved it).
  void reopenLogs();
  /// The config source and the outcome of its last change.
  ConfigSourceStatus configSource() const;
  /// The instances discovered in etcd, by prefix (upstreams with "discovery").
  std::map<std::string, std::vector<common::HostPort>> discoveredInstances() const {
    return discovered();
  }
  /// This replica as it registers itself (JSON: id, addresses, applied config revision and
  /// version, status).
  std::string replicaDocument() const;
  /// The admin address registered for the other replicas (see ProxyOptions::advertise_admin).
  std::string advertisedAdmin() const;
  /// Every replica registered under the config's etcd prefix (by key order, as the registry's
  /// watch last showed it); with a file config, this one only.
  std::vector<nlohmann::json> replicaDocuments() const;
  /// The replicas sharing this etcd config; nullptr with a file config.
  const ReplicaSet* replicas() const { return replicas_.get(); }
  /// This replica's figures for GET /figures: each route's step and its counts, to be summed.
  nlohmann::json figuresDocument();
  /// Each route's figures of its current step summed over every live replica on that step
  /// (with a file config, or without `across_replicas`: this proxy's), and each replica alone;
  /// `now` is this proxy's figures (figures()).
  ClusterFigures clusterFigures(const std::map<std::string, RouteFigures>& now,
                                bool across_replicas = true);
  /// Stops the admin API, lets requests in flight finish (up to `grace`), stops the loops.
  void stop(std::chrono::milliseconds grace);
  /// Resolves endpoints given by host name again when their upstream's resolve_ms has passed;
  /// publishes a new snapshot when an address changed (run by the guard thread).
  void reresolveTick();

  /// The address the data path listens on.
  common::HostPort proxyAddress() const;
  /// The HTTPS address bound; nullopt without "tls".
  std::optional<common::HostPort> tlsAddress() const;
  /// The address the admin API listens on.
  common::HostPort adminAddress() const;
  /// The snapshot new requests use.
  std::shared_ptr<const Runtime> current() const { return shared_->current(); }
  ProxyShared& shared() { return *shared_; }
  UpstreamRegistry& registry() { return registry_; }
  /// The routes' write holds (POST/GET/DELETE /routes/NAME/hold).
  RouteHolds& holds() { return *holds_; }
  /// The admin token (value of the env var admin.token_env names); empty when none.
  std::string adminToken() const;
  uint64_t reloadsSucceeded() const { return reloads_ok_.load(); }
  uint64_t reloadsFailed() const { return reloads_failed_.load(); }
  /// Every route's figures since the proxy started.
  std::map<std::string, RouteFigures> figures();
  /// Each route's figures since it entered its current step, with the step's start (epoch ms).
  const StepTracker& steps() const { return steps_; }

 private:
  ProxyApp();
  static std::string adminTokenFor(const ProxyConfig& config);
  /// Validates and publishes `text` (etcd revision `mod_revision`, 0 for files).
  common::Result<uint64_t> applyText(const std::string& text, int64_t mod_revision);
  /// Called by the etcd follower with the config key's current value.
  void onEtcdConfig(const std::optional<std::string>& text, int64_t mod_revision);

  ProxyOptions options_;
  UpstreamRegistry registry_;
  std::shared_ptr<RouteHolds> holds_;  ///< by route name, across reloads
  std::shared_ptr<ProxyShared> shared_;
  std::unique_ptr<ProxyServer> server_;
  std::unique_ptr<AdminServer> admin_;
  std::mutex reload_mutex_;
  uint64_t version_ = 0;
  std::atomic<uint64_t> reloads_ok_{0};
  std::atomic<uint64_t> reloads_failed_{0};
  StepTracker steps_;
  mutable std::mutex source_mutex_;
  ConfigSourceStatus source_;
  std::unique_ptr<common::EtcdFollower> config_follower_;

  // Service discovery: one follower per etcd prefix the upstreams use; each change of a prefix's
  // instances publishes a new snapshot of the same config.
  common::Result<std::vector<common::HostPort>> discoveryEtcd(const ProxyConfig& config) const;
  void reconcileDiscovery(const ProxyConfig& config);
  void onDiscovery(const std::string& prefix, const std::vector<common::HostPort>& instances);
  std::map<std::string, std::vector<common::HostPort>> discovered() const;
  // This replica's registration at PREFIX/replicas/<id>, under a lease (etcd configs only).
  void updateReplica();
  std::string replica_id_;
  std::string replica_started_;
  std::unique_ptr<ReplicaSet> replicas_;

  std::mutex discovery_mutex_;  // the followers
  std::map<std::string, std::unique_ptr<common::EtcdFollower>> discovery_followers_;
  std::string discovery_members_;  // the etcd members the followers read
  bool discovery_stopped_ = false;
  mutable std::mutex discovered_mutex_;
  std::map<std::string, std::vector<common::HostPort>> discovered_;

  // The canary guard: steps a canary back (in the file, journaled, then reloaded) when the
  // target's error rate in the current step crosses the route's gate.
  void guardLoop();
  void guardTick();
  std::thread guard_;
  std::mutex guard_mutex_;
  std::condition_variable guard_wake_;
  bool guard_stop_ = false;
  std::string guard_last_error_;  ///< the guard's last failure to open the config, said once
};

}  // namespace strangler::proxy
