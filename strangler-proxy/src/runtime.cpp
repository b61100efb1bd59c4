#include "strangler/proxy/runtime.h"

#include <netdb.h>

#include <cstdint>
#include <cstring>

#include "tls.h"

namespace strangler::proxy {
namespace {

bool systemResolve(const common::HostPort& address, sockaddr_storage& out, socklen_t& length,
                   std::string& error) {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* found = nullptr;
  const std::string port = std::to_string(address.port);
  const int rc = getaddrinfo(address.host.c_str(), port.c_str(), &hints, &found);
  if (rc != 0 || found == nullptr) {
    error = gai_strerror(rc);
    return false;
  }
  std::memcpy(&out, found->ai_addr, found->ai_addrlen);
  length = found->ai_addrlen;
  freeaddrinfo(found);
  return true;
}

}  // namespace

void UpstreamRegistry::setResolver(Resolver resolver) {
  std::lock_guard lock(mutex_);
  resolver_ = std::move(resolver);
}

std::shared_ptr<EndpointState> UpstreamRegistry::resolveEndpoint(const common::HostPort& address,
                                                                 std::string& error) {
  auto state = std::make_shared<EndpointState>();
  const bool ok = resolver_ ? resolver_(address, state->sockaddr, state->sockaddr_len, error)
                            : systemResolve(address, state->sockaddr, state->sockaddr_len, error);
  if (!ok) return nullptr;
  state->address = address;
  state->key = address.toString();
  state->pool_key = state->key + "#" + std::to_string(++generation_);
  return state;
}

std::vector<std::string> UpstreamRegistry::reresolve(const ProxyConfig& config,
                                                     std::chrono::steady_clock::time_point now) {
  std::lock_guard lock(mutex_);
  std::vector<std::string> changed;
  for (const auto& [name, upstream] : config.upstreams) {
    if (upstream.resolve_ms <= 0 || !upstream.discovery_prefix.empty()) continue;
    for (const auto& address : upstream.endpoints) {
      const std::string key = address.toString();
      const auto known = endpoints_.find(key);
      // An address literal never resolves differently.
      if (known == endpoints_.end() || parseIp(address.host)) continue;
      auto& at = resolved_at_[key];
      if (now - at < std::chrono::milliseconds(upstream.resolve_ms)) continue;
      at = now;
      std::string error;
      auto fresh = resolveEndpoint(address, error);
      if (!fresh) continue;  // keeps the address it had: a failing resolver is not a dead upstream
      const auto& old = *known->second;
      if (fresh->sockaddr_len == old.sockaddr_len &&
          std::memcmp(&fresh->sockaddr, &old.sockaddr, old.sockaddr_len) == 0) {
        continue;
      }
      known->second = std::move(fresh);
      changed.push_back(key);
    }
  }
  return changed;
}

const RuntimeUpstream* Runtime::upstream(const std::string& name) const {
  const auto it = upstreams.find(name);
  return it == upstreams.end() ? nullptr : &it->second;
}

common::Result<std::shared_ptr<const Runtime>> UpstreamRegistry::build(
    std::shared_ptr<const ProxyConfig> config, uint64_t version, std::shared_ptr<RouteHolds> holds,
    const std::map<std::string, std::vector<common::HostPort>>& discovered) {
  using R = common::Result<std::shared_ptr<const Runtime>>;
  auto runtime = std::make_shared<Runtime>();
  runtime->config = config;
  runtime->router = std::make_unique<Router>(*config);
  runtime->version = version;
  runtime->holds.reserve(config->routes.size());
  for (const auto& route : config->routes)
    runtime->holds.push_back(&holds->get(route.name));
  runtime->route_holds = std::move(holds);
  if (config->tls) {
    auto tls = TlsServerContext::load(config->tls->cert_file, config->tls->key_file);
    if (!tls) return R(tls.error());
    runtime->tls = std::move(tls).value();
  }
  std::lock_guard lock(mutex_);
  for (const auto& [name, upstream] : config->upstreams) {
    RuntimeUpstream entry;
    entry.config = &upstream;
    if (upstream.tls) {
      auto tls = TlsClientContext::create(upstream.tls->ca_file, upstream.tls->insecure);
      if (!tls) {
        return R::failure(tls.error().code, "upstreams." + name + "." + tls.error().message);
      }
      entry.tls = std::move(tls).value();
      entry.tls_pool_suffix = " tls " + upstream.tls->server_name + " " +
                              std::to_string(reinterpret_cast<uintptr_t>(entry.tls.get()));
    }
    static const std::vector<common::HostPort> kNone;
    const std::vector<common::HostPort>* addresses = &upstream.endpoints;
    if (!upstream.discovery_prefix.empty()) {
      const auto found = discovered.find(upstream.discovery_prefix);
      addresses = found == discovered.end() ? &kNone : &found->second;
    }
    for (size_t i = 0; i < addresses->size(); ++i) {
      const auto& address = (*addresses)[i];
      const std::string key = address.toString();
      auto& state = endpoints_[key];
      if (!state) {
        std::string error;
        state = resolveEndpoint(address, error);
        if (!state) {
          endpoints_.erase(key);
          // A registered instance that does not resolve is left out; a written one is an error.
          if (!upstream.discovery_prefix.empty()) continue;
          return R::failure("invalid_config", "upstreams." + name + ".endpoints[" +
                                                  std::to_string(i) + "]: cannot resolve '" +
                                                  address.host + "': " + error);
        }
        resolved_at_[key] = std::chrono::steady_clock::now();
      }
      entry.endpoints.push_back(state);
    }
    if (upstream.circuit_breaker) {
      auto& breaker = breakers_[name];
      if (!breaker) {
        breaker = std::make_shared<CircuitBreaker>(*upstream.circuit_breaker);
      } else {
        breaker->reconfigure(*upstream.circuit_breaker);
      }
      entry.breaker = breaker;
    } else {
      breakers_.erase(name);
    }
    auto& round_robin = round_robins_[name];
    if (!round_robin) round_robin = std::make_shared<std::atomic<uint64_t>>(0);
    entry.round_robin = round_robin;
    runtime->upstreams.emplace(name, std::move(entry));
  }
  return std::shared_ptr<const Runtime>(std::move(runtime));
}

std::map<std::string, std::shared_ptr<CircuitBreaker>> UpstreamRegistry::breakers() const {
  std::lock_guard lock(mutex_);
  return breakers_;
}

}  // namespace strangler::proxy
