#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "strangler/common/host_port.h"
#include "strangler/common/result.h"

namespace strangler::proxy {

/// The migration stage of a route (DESIGN.md, "Route stages").
enum class Stage { kMonolith, kShadow, kCanary, kExtracted };

/// "monolith", "shadow", "canary" or "extracted".
const char* stageName(Stage stage);
/// Parses a stage name; nullopt for anything else.
std::optional<Stage> parseStage(const std::string& text);

struct CircuitBreakerConfig {
  int consecutive_failures = 5;
  int open_ms = 10000;
};

struct UpstreamConfig {
  std::string name;
  std::vector<common::HostPort> endpoints;
  int timeout_ms = 5000;          ///< to the response head, and between reads after it
  int connect_timeout_ms = 1000;  ///< TCP connect
  int eject_ms = 5000;            ///< an endpoint that refused a connection is skipped this long
  int max_idle_connections = 64;  ///< kept-alive connections per endpoint and worker
  std::optional<CircuitBreakerConfig> circuit_breaker;
};

struct StickyConfig {
  std::string header;  ///< exactly one of header / cookie is set
  std::string cookie;
};

struct RewriteConfig {
  std::string prefix;
  std::string to;
};

/// Shadow settings; only carried here, the shadow comparison itself lives behind ShadowSink.
struct ShadowConfig {
  std::vector<std::string> ignore;
  double sample = 1.0;
  bool unsafe_methods = false;
  std::string acl;
};

struct RouteConfig {
  std::string name;
  std::string path;                  ///< match.path
  std::vector<std::string> methods;  ///< match.methods; empty = any
  std::string target;                ///< upstream name; empty only in stage monolith
  Stage stage = Stage::kMonolith;
  int percent = 0;
  std::optional<StickyConfig> sticky;
  bool fallback = false;
  std::optional<RewriteConfig> rewrite;
  std::string cohort;
  std::optional<ShadowConfig> shadow;
};

struct AdminConfig {
  common::HostPort listen{"127.0.0.1", 9901};
  std::string token_env;
};

struct LimitsConfig {
  int max_header_bytes = 64 * 1024;
  int64_t max_body_bytes = 10 * 1024 * 1024;
  int header_timeout_ms = 10000;  ///< a request head must arrive within this
  int idle_timeout_ms = 60000;    ///< idle keep-alive client connections are closed after this
};

/// A validated strangler.json. Built only by create()/load(), so every instance is valid.
class ProxyConfig {
 public:
  /// Validates `json` strictly; on failure the error message lists every violation, one per
  /// line, each naming its key path (`routes[2].percent: 150 is not in 1..99`).
  static common::Result<ProxyConfig> create(const nlohmann::json& json);
  /// Parses `text` as JSON, then create().
  static common::Result<ProxyConfig> parse(const std::string& text);
  /// Reads `path`, then parse().
  static common::Result<ProxyConfig> load(const std::string& path);
  /// Every violation in `json`, each naming its key path; empty when valid.
  static std::vector<std::string> validate(const nlohmann::json& json);

  common::HostPort listen{"127.0.0.1", 8080};
  AdminConfig admin;
  bool debug_headers = false;
  std::map<std::string, UpstreamConfig> upstreams;
  std::string default_upstream;
  std::vector<RouteConfig> routes;
  LimitsConfig limits;
  int workers = 0;         ///< 0: one per core
  std::string access_log;  ///< "", "stdout" or a file path
  std::string hash;        ///< short content hash of the normalized JSON, for /routes

  /// The route named `name`, or nullptr.
  const RouteConfig* findRoute(const std::string& name) const;
  /// The config as JSON (the same schema it was read from).
  nlohmann::json toJson() const;
};

}  // namespace strangler::proxy
