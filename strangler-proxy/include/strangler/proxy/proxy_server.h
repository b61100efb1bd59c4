#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <thread>
#include <vector>

#include "strangler/common/host_port.h"
#include "strangler/common/result.h"
#include "strangler/proxy/access_log.h"
#include "strangler/proxy/metrics.h"
#include "strangler/proxy/runtime.h"
#include "strangler/proxy/shadow_sink.h"

namespace strangler::proxy {

class Worker;

/// State the workers share: the current snapshot, metrics, logs, the shadow seam, the routes'
/// write holds.
class ProxyShared {
 public:
  ProxyShared(std::shared_ptr<const Runtime> runtime, size_t workers,
              std::shared_ptr<RouteHolds> route_holds);

  /// Makes `runtime` the snapshot new requests use; requests in flight keep theirs.
  void publish(std::shared_ptr<const Runtime> runtime);
  /// The current snapshot.
  std::shared_ptr<const Runtime> current() const;
  /// Bumped by every publish(), so loops refresh their cached snapshot only when it changed.
  uint64_t generation() const { return generation_.load(std::memory_order_acquire); }

  Metrics metrics;
  std::shared_ptr<ShadowSink> shadow = std::make_shared<NullShadowSink>();
  std::shared_ptr<AccessLog> access_log;    ///< null: no access log
  const std::shared_ptr<RouteHolds> holds;  ///< the same the snapshots point into
  std::atomic<int64_t> open_connections{0};
  std::atomic<int64_t> active_requests{0};

 private:
  mutable std::mutex mutex_;
  std::shared_ptr<const Runtime> runtime_;
  std::atomic<uint64_t> generation_{1};
};

/// The data path: one epoll event loop per worker thread, each with its own SO_REUSEPORT
/// listener and its own keep-alive pools of upstream connections.
class ProxyServer {
 public:
  /// Binds `listen` (port 0: any free port, shared by all workers), and `tls_listen` when given
  /// (HTTPS, with the certificate of the runtime in force at each accept), and starts `workers`
  /// loops.
  static common::Result<std::unique_ptr<ProxyServer>> start(
      const common::HostPort& listen, int workers, std::shared_ptr<ProxyShared> shared,
      const std::optional<common::HostPort>& tls_listen = std::nullopt);
  ~ProxyServer();
  ProxyServer(const ProxyServer&) = delete;
  ProxyServer& operator=(const ProxyServer&) = delete;

  /// The address actually bound.
  const common::HostPort& address() const { return address_; }
  /// The HTTPS address actually bound; nullopt without one.
  const std::optional<common::HostPort>& tlsAddress() const { return tls_address_; }
  /// Stops accepting, lets requests in flight finish (up to `grace`), then joins the loops.
  void stop(std::chrono::milliseconds grace);

 private:
  ProxyServer() = default;

  common::HostPort address_;
  std::optional<common::HostPort> tls_address_;
  std::shared_ptr<ProxyShared> shared_;
  std::vector<std::unique_ptr<Worker>> workers_;
  std::vector<std::thread> threads_;
  bool stopped_ = false;
};

}  // namespace strangler::proxy
