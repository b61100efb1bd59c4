#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "strangler/proxy/config.h"
#include "strangler/proxy/route_table.h"

namespace strangler::proxy {

/// Request header fields as received (names in their original case).
using HeaderList = std::vector<std::pair<std::string, std::string>>;

/// What the router looks at: method, normalized path (see normalizeTarget) and headers.
struct RequestView {
  std::string_view method;
  std::string_view path;
  const HeaderList* headers = nullptr;
};

/// Where a request goes.
struct Decision {
  int route_index = -1;                ///< -1: no route matched
  const RouteConfig* route = nullptr;  ///< nullptr: no route matched
  std::string upstream;                ///< the upstream to send to
  std::string path;                    ///< the path to send (rewritten when going to a target)
  bool to_target = false;              ///< upstream is the route's target, not the monolith
  std::string fallback_upstream;       ///< set when a failure may be retried there (idempotent)
  std::string fallback_path;           ///< the path for the fallback upstream
  bool shadow = false;                 ///< a copy should go to route->target (shadow stage)
  std::string shadow_path;             ///< the path a shadow copy is sent with (rewritten)
  int bucket = -1;                     ///< canary bucket 0..9999 of the sticky key, -1 if none
  /// default, monolith, shadow, canary, extracted, or data_owner (an unsafe request of a
  /// canary route that carries data: it goes to the side that owns the data)
  const char* reason = "default";
};

/// True for GET, HEAD, OPTIONS, TRACE, PUT and DELETE (RFC 9110 idempotent methods).
bool isIdempotent(std::string_view method);
/// True for GET, HEAD and OPTIONS: the methods that never write, so a route that carries data
/// may split them, shadow them and let them through a write hold. Every other method is unsafe.
bool isSafe(std::string_view method);

/// The canary bucket (0..9999) of a sticky key. Routes of one cohort share `seed` (the cohort
/// name; the route name otherwise), so a key lands on the same side across them. A key goes to
/// the target when bucket < percent * 100, so raising the percent only moves keys to the target.
int canaryBucket(std::string_view seed, std::string_view key);

/// The value of cookie `name` in the request's Cookie headers, or nullopt.
std::optional<std::string_view> findCookie(const HeaderList& headers, std::string_view name);
/// The first header named `name` (case-insensitive), or nullopt.
std::optional<std::string_view> findHeader(const HeaderList& headers, std::string_view name);

/// The routing decision as a pure function of a config snapshot and a request.
class Router {
 public:
  /// Builds the route table for `config`, which must outlive the router.
  explicit Router(const ProxyConfig& config);

  /// Decides where `request` goes. `random` (any 64-bit value) splits canary traffic that
  /// carries no sticky key. On a route with `data`, unsafe methods go to the data's owner (the
  /// monolith until stage extracted, the target then), are never shadowed, and fall back only
  /// when safe.
  Decision decide(const RequestView& request, uint64_t random) const;

  const ProxyConfig& config() const { return config_; }

 private:
  const ProxyConfig& config_;
  RouteTable table_;
};

}  // namespace strangler::proxy
