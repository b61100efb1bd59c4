#pragma once

#include <sys/socket.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

#include "strangler/common/result.h"
#include "strangler/proxy/circuit_breaker.h"
#include "strangler/proxy/config.h"
#include "strangler/proxy/route_holds.h"
#include "strangler/proxy/router.h"

namespace strangler::proxy {

class TlsServerContext;
class TlsClientContext;

/// One upstream address, resolved; its ejection state outlives config reloads.
struct EndpointState {
  common::HostPort address;
  std::string key;       ///< "host:port"
  std::string pool_key;  ///< its connections' pool: a new address (re-resolved) is a new pool
  sockaddr_storage sockaddr{};
  socklen_t sockaddr_len = 0;
  std::atomic<int64_t> ejected_until_ns{0};  ///< steady clock; skipped by round robin until then
};

/// An upstream as the data path sees it.
struct RuntimeUpstream {
  const UpstreamConfig* config = nullptr;
  std::vector<std::shared_ptr<EndpointState>> endpoints;
  std::shared_ptr<CircuitBreaker> breaker;  ///< null when the upstream has no circuit_breaker
  std::shared_ptr<std::atomic<uint64_t>> round_robin;
  /// "tls": the context its connections take (null: plain TCP), and what its connections' pool
  /// keys add to the endpoint's (per context and name, so plain and TLS never share a pool and a
  /// reload with another CA starts new connections).
  std::shared_ptr<const TlsClientContext> tls;
  std::string tls_pool_suffix;
};

/// An immutable snapshot of everything a request needs: config, route table and upstreams.
/// Each request holds a shared_ptr to the snapshot it started with, so a reload never changes
/// a request in flight.
struct Runtime {
  std::shared_ptr<const ProxyConfig> config;
  std::unique_ptr<Router> router;
  std::unordered_map<std::string, RuntimeUpstream> upstreams;
  std::shared_ptr<RouteHolds> route_holds;  ///< keeps the holds below alive
  std::vector<RouteHold*> holds;            ///< the write hold of each route, by route index
  /// The HTTPS listener's certificate and settings (config "tls"), loaded with this snapshot;
  /// null without "tls".
  std::shared_ptr<const TlsServerContext> tls;
  uint64_t version = 0;

  /// The upstream named `name`, or nullptr.
  const RuntimeUpstream* upstream(const std::string& name) const;
};

/// Keeps endpoint health and circuit breakers across reloads (by endpoint and upstream name).
class UpstreamRegistry {
 public:
  /// Builds a snapshot for `config`, resolving endpoint addresses (blocking: never call it on
  /// a loop thread). Upstreams with discovery take their endpoints from `discovered` (by etcd
  /// prefix; none when absent). Each route gets its write hold from `holds` (by name, so a hold
  /// outlives the snapshot). Fails when a host name does not resolve.
  common::Result<std::shared_ptr<const Runtime>> build(
      std::shared_ptr<const ProxyConfig> config, uint64_t version,
      std::shared_ptr<RouteHolds> holds,
      const std::map<std::string, std::vector<common::HostPort>>& discovered = {});
  /// The breakers of the upstreams that have one, by upstream name.
  std::map<std::string, std::shared_ptr<CircuitBreaker>> breakers() const;

  /// Resolves again, blocking, the endpoints of `config` given by host name whose upstream's
  /// resolve_ms has passed since they were last resolved. An endpoint whose address changed gets
  /// a new state (new connections go to the new address; the next build() uses it); one that
  /// does not resolve now keeps its address. Returns the "host:port" keys that changed.
  std::vector<std::string> reresolve(const ProxyConfig& config,
                                     std::chrono::steady_clock::time_point now);

  /// How a host name becomes an address (getaddrinfo by default; tests give another).
  using Resolver =
      std::function<bool(const common::HostPort&, sockaddr_storage&, socklen_t&, std::string&)>;
  void setResolver(Resolver resolver);

 private:
  std::shared_ptr<EndpointState> resolveEndpoint(const common::HostPort& address,
                                                 std::string& error);

  mutable std::mutex mutex_;
  Resolver resolver_;
  uint64_t generation_ = 0;
  std::map<std::string, std::chrono::steady_clock::time_point> resolved_at_;
  std::map<std::string, std::shared_ptr<EndpointState>> endpoints_;
  std::map<std::string, std::shared_ptr<CircuitBreaker>> breakers_;
  std::map<std::string, std::shared_ptr<std::atomic<uint64_t>>> round_robins_;
};

}  // namespace strangler::proxy
