#include "strangler/proxy/router.h"

#include "text.h"

namespace strangler::proxy {
namespace {

std::string rewritePath(const RouteConfig& route, const std::string& path) {
  if (!route.rewrite) return path;
  const auto& prefix = route.rewrite->prefix;
  if (path.compare(0, prefix.size(), prefix) != 0) return path;
  // Only rewrite on a segment boundary: "/api/drivers" must not rewrite "/api/driversX".
  if (path.size() > prefix.size() && prefix.back() != '/' && path[prefix.size()] != '/')
    return path;
  std::string rewritten = route.rewrite->to;
  std::string rest = path.substr(prefix.size());
  if (!rewritten.empty() && rewritten.back() == '/' && !rest.empty() && rest.front() == '/') {
    rest.erase(0, 1);
  }
  rewritten += rest;
  return rewritten.empty() ? "/" : rewritten;
}

}  // namespace

bool isIdempotent(std::string_view method) {
  return method == "GET" || method == "HEAD" || method == "OPTIONS" || method == "TRACE" ||
         method == "PUT" || method == "DELETE";
}

bool isSafe(std::string_view method) {
  return method == "GET" || method == "HEAD" || method == "OPTIONS";
}

int canaryBucket(std::string_view seed, std::string_view key) {
  // FNV-1a, then a 64-bit finalizer: stable across processes and versions (std::hash is not).
  uint64_t hash = 1469598103934665603ULL;
  auto mix = [&hash](unsigned char c) {
    hash ^= c;
    hash *= 1099511628211ULL;
  };
  for (const unsigned char c : seed)
    mix(c);
  mix(0);
  for (const unsigned char c : key)
    mix(c);
  hash ^= hash >> 33;
  hash *= 0xff51afd7ed558ccdULL;
  hash ^= hash >> 33;
  hash *= 0xc4ceb9fe1a85ec53ULL;
  hash ^= hash >> 33;
  return static_cast<int>(hash % 10000);
}

std::optional<std::string_view> findHeader(const HeaderList& headers, std::string_view name) {
  for (const auto& [field, value] : headers) {
    if (iequals(field, name)) return std::string_view(value);
  }
  return std::nullopt;
}

std::optional<std::string_view> findCookie(const HeaderList& headers, std::string_view name) {
  for (const auto& [field, value] : headers) {
    if (!iequals(field, "cookie")) continue;
    std::string_view rest(value);
    while (!rest.empty()) {
      const size_t semi = rest.find(';');
      const std::string_view pair = trimSpace(rest.substr(0, semi));
      rest = semi == std::string_view::npos ? std::string_view() : rest.substr(semi + 1);
      const size_t equals = pair.find('=');
      if (equals == std::string_view::npos) continue;
      if (trimSpace(pair.substr(0, equals)) == name) {
        std::string_view cookie = trimSpace(pair.substr(equals + 1));
        if (cookie.size() >= 2 && cookie.front() == '"' && cookie.back() == '"') {
          cookie = cookie.substr(1, cookie.size() - 2);
        }
        return cookie;
      }
    }
  }
  return std::nullopt;
}

Router::Router(const ProxyConfig& config) : config_(config), table_(config.routes) {}

Decision Router::decide(const RequestView& request, uint64_t random) const {
  Decision decision;
  decision.upstream = config_.default_upstream;
  decision.path = std::string(request.path);
  const int index = table_.match(request.method, request.path);
  if (index < 0) return decision;
  const RouteConfig& route = config_.routes[static_cast<size_t>(index)];
  decision.route_index = index;
  decision.route = &route;

  // A write on a route that carries data must reach the side that owns the data: the sync
  // copies it from there, and a write on the other side would be overwritten or lost.
  const bool owned_write = !route.data.empty() && !isSafe(request.method);
  bool to_target = false;
  switch (route.stage) {
    case Stage::kMonolith:
      decision.reason = "monolith";
      break;
    case Stage::kShadow:
      // Served by the monolith; the copy to the target is the shadow component's job. Only
      // safe methods unless the route opts in: a copied PUT or DELETE (idempotent, but writes)
      // would change the target's data — on a route that carries data, data the sync owns, so
      // never there, whatever the route says.
      decision.reason = "shadow";
      decision.shadow = !owned_write &&
                        (isSafe(request.method) || (route.shadow && route.shadow->unsafe_methods));
      if (decision.shadow) decision.shadow_path = rewritePath(route, decision.path);
      break;
    case Stage::kCanary: {
      if (owned_write) {
        decision.reason = "data_owner";  // the monolith owns the data until the flip
        break;
      }
      decision.reason = "canary";
      std::optional<std::string_view> key;
      if (route.sticky && request.headers) {
        key = route.sticky->header.empty() ? findCookie(*request.headers, route.sticky->cookie)
                                           : findHeader(*request.headers, route.sticky->header);
      }
      int bucket = 0;
      if (key && !key->empty()) {
        bucket = canaryBucket(route.cohort.empty() ? route.name : route.cohort, *key);
        decision.bucket = bucket;
      } else {
        bucket = static_cast<int>(random % 10000);
      }
      to_target = bucket < route.percent * 100;
      break;
    }
    case Stage::kExtracted:
      decision.reason = "extracted";
      to_target = true;
      break;
  }
  if (!to_target) return decision;
  decision.to_target = true;
  decision.upstream = route.target;
  decision.path = rewritePath(route, decision.path);
  // Once extracted the target owns the data: a write retried on the monolith would miss it.
  if (route.fallback && isIdempotent(request.method) && !owned_write &&
      route.target != config_.default_upstream) {
    decision.fallback_upstream = config_.default_upstream;
    decision.fallback_path = std::string(request.path);
  }
  return decision;
}

}  // namespace strangler::proxy
