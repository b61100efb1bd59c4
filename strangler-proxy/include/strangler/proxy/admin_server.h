#pragma once

#include <memory>
#include <string>

#include "strangler/common/host_port.h"
#include "strangler/common/result.h"

namespace Poco::Net {
class HTTPServer;
}

namespace strangler::proxy {

class ProxyApp;

/// The admin API (Poco HTTPServer; not on the request path): /healthz, /routes, /metrics,
/// POST /reload (bearer token) and a small HTML page at /.
class AdminServer {
 public:
  /// Listens on `address` (port 0: any free port) and serves `app`.
  static common::Result<std::unique_ptr<AdminServer>> start(const common::HostPort& address,
                                                            ProxyApp& app);
  ~AdminServer();
  AdminServer(const AdminServer&) = delete;
  AdminServer& operator=(const AdminServer&) = delete;

  /// The address actually bound.
  const common::HostPort& address() const { return address_; }
  /// Stops accepting and waits for handlers to return.
  void stop();

 private:
  AdminServer() = default;
  common::HostPort address_;
  std::unique_ptr<Poco::Net::HTTPServer> server_;
};

/// The Prometheus text exposition of the app's metrics.
std::string renderMetrics(ProxyApp& app);
/// The /routes document.
std::string renderRoutes(ProxyApp& app, bool across_replicas = true);

}  // namespace strangler::proxy
