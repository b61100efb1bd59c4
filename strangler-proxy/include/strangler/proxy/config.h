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
#include "strangler/proxy/cidr.h"

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

/// An upstream reached over TLS ("tls"): verified unless `insecure` is set explicitly.
struct UpstreamTlsConfig {
  std::string ca_file;      ///< PEM bundle of trusted CAs; empty: the system's trust store
  std::string server_name;  ///< SNI and the name verified; empty: each endpoint's host
  bool insecure = false;    ///< no verification at all (an explicit choice, never a fallback)
};

struct UpstreamConfig {
  std::string name;
  std::vector<common::HostPort> endpoints;  ///< empty when the upstream uses discovery
  /// "discovery": {"etcd_prefix": ...}: the endpoints are the instances registered under this
  /// etcd prefix (each a key whose value is "HOST:PORT" or {"address": "HOST:PORT"}).
  std::string discovery_prefix;
  int timeout_ms = 5000;          ///< to the response head, and between reads after it
  int connect_timeout_ms = 1000;  ///< TCP connect
  int eject_ms = 5000;            ///< an endpoint that refused a connection is skipped this long
  int resolve_ms =
      30000;  ///< endpoints given by host name are resolved again this often (0: never)
  int max_idle_connections = 64;  ///< kept-alive connections per endpoint and worker
  std::optional<CircuitBreakerConfig> circuit_breaker;
  std::optional<UpstreamTlsConfig> tls;
  /// "protocol": "h2": requests reach it as HTTP/2 (prior knowledge in clear text, ALPN "h2"
  /// over TLS) — what a gRPC service speaks. Default "http1".
  bool h2 = false;
};

struct StickyConfig {
  std::string header;  ///< exactly one of header / cookie is set
  std::string cookie;
};

struct RewriteConfig {
  std::string prefix;
  std::string to;
};

/// Shadow settings of a route (the comparison itself lives behind ShadowSink).
/// How much of a request body is kept when a route sets no shadow.max_body_bytes.
inline constexpr int64_t kDefaultKeptBodyBytes = 1 << 20;

struct ShadowConfig {
  std::vector<std::string> ignore;  ///< JSON pointer patterns left out of the comparison
  double sample = 1.0;              ///< fraction of eligible requests copied
  bool unsafe_methods = false;      ///< also copy POST/PUT/PATCH/DELETE
  std::string acl;                  ///< response translator applied to the target's answer
  bool noise_filter = false;  ///< ask the monolith twice; ignore what differs between its answers
  std::vector<std::string> headers{"Content-Type"};  ///< response headers compared
  /// A request body up to this is kept (read whole before the request goes on) for a shadow
  /// copy, a fallback or a retry; a larger one streams and gets none of them.
  int64_t max_body_bytes = kDefaultKeptBodyBytes;
  /// Budgets (0: none): copies of this route queued or being replayed at once, and copies
  /// started per second. A copy past either is dropped and counted with its reason.
  int max_inflight = 0;
  double max_rate = 0;
};

/// One step of a route's migration plan: a stage, with the percent for canary steps.
struct PlanStep {
  Stage stage = Stage::kMonolith;
  int percent = 0;
  bool operator==(const PlanStep&) const = default;
};

/// The default plan: shadow → canary 1 → 10 → 50 → extracted.
std::vector<PlanStep> defaultPlan();
/// "shadow", "canary 10", "extracted"...
std::string describeStep(const PlanStep& step);
/// The step after `current` in `plan` (steps are ordered monolith < shadow < canary by percent <
/// extracted, so a current step that is not in the plan still has a place); nullopt at the end.
std::optional<PlanStep> nextStep(const std::vector<PlanStep>& plan, const PlanStep& current);
/// The step before `current` in `plan`; monolith before the first.
PlanStep previousStep(const std::vector<PlanStep>& plan, const PlanStep& current);

/// What `strangler routes advance` requires of the live figures before the next step, and when
/// the proxy rolls a canary back by itself.
struct GatesConfig {
  int64_t min_samples = 100;  ///< requests (or shadow comparisons) seen in the current step
  double max_mismatch_rate =
      0.01;  ///< shadow mismatches (less those shown to be lag) / comparisons
  /// Shadow copies compared / copies the sample picked: below it the comparisons are a sample
  /// nobody chose (copies dropped under load), and the gate refuses to judge.
  double min_compared_share = 0.9;
  double max_error_rate = 0.01;    ///< target 5xx and failures / target requests
  double max_latency_ratio = 1.5;  ///< target p99 / monolith p99
  bool auto_rollback = true;       ///< the proxy steps a canary back when errors cross the gate

  nlohmann::json toJson() const;
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
  /// The route's own limits.max_body_bytes (0: no limit); unset: the global one.
  std::optional<int64_t> max_body_bytes;
  /// "data": the sync mapping whose data the route's writes change (empty: none). Unsafe
  /// methods then go to the side that owns the data and are never shadowed.
  std::string data;
  std::optional<ShadowConfig> shadow;
  std::vector<PlanStep> plan;  ///< empty: defaultPlan()
  GatesConfig gates;
  bool has_gates = false;  ///< "gates" was written (toJson() writes it back only then)

  /// The plan in force (the route's own or the default one).
  std::vector<PlanStep> effectivePlan() const { return plan.empty() ? defaultPlan() : plan; }
};

/// The share of the route's requests its stage sends to the target: the percent in a canary,
/// 100 extracted, 0 otherwise.
int stepPercent(const RouteConfig& route);

struct AdminConfig {
  common::HostPort listen{"127.0.0.1", 9901};
  std::string token_env;
  std::string sync_status_url;  ///< a `sync watch --status-listen` URL relayed by GET /sync
};

/// The HTTPS listener beside `listen` ("tls"): same routes. The files are read when the proxy
/// starts and on every reload.
struct TlsListenConfig {
  common::HostPort listen{"127.0.0.1", 8443};
  std::string cert_file;  ///< PEM: the certificate, then its chain
  std::string key_file;   ///< PEM
};

struct LimitsConfig {
  int max_header_bytes = 64 * 1024;
  /// Request bodies stream through in bounded memory whatever their size; past this many
  /// bytes the request gets 413. 0: no limit.
  int64_t max_body_bytes = 10 * 1024 * 1024;
  int header_timeout_ms = 10000;  ///< a request head must arrive within this
  int idle_timeout_ms = 60000;    ///< idle keep-alive client connections are closed after this
  /// An upgraded connection (WebSocket) with no byte either way for this long is closed.
  int tunnel_idle_timeout_ms = 300000;
  int shadow_queue = 1024;      ///< shadow copies waiting for replay; more are dropped
  int shadow_concurrency = 8;   ///< shadow copies in flight at once (read at start only)
  int max_connections = 10000;  ///< open client connections; past it: 503 and close, counted
};

/// The fenced cutover (`routes extract NAME --with-data`): how long the proxy parks a request
/// held by a route's write hold before answering 503.
struct CutoverConfig {
  int hold_ms = 2000;
};

/// A config document as read from its source, with the etcd revision it had (0 for files).
struct ConfigText {
  std::string text;
  int64_t mod_revision = 0;
};

/// Reads the config document at `location`: a file path, or an etcd URL
/// (`etcd://HOST:PORT[,HOST:PORT...]/PREFIX`, the document being the value of `PREFIX/config`).
common::Result<ConfigText> readConfigSource(const std::string& location);

/// A validated strangler.json. Built only by create()/load(), so every instance is valid.
class ProxyConfig {
 public:
  /// Validates `json` strictly; on failure the error message lists every violation, one per
  /// line, each naming its key path (`routes[2].percent: 150 is not in 1..99`).
  static common::Result<ProxyConfig> create(const nlohmann::json& json);
  /// Parses `text` as JSON, then create().
  static common::Result<ProxyConfig> parse(const std::string& text);
  /// Reads `path` (a file or an etcd URL, see readConfigSource()), then parse().
  static common::Result<ProxyConfig> load(const std::string& path);
  /// Every violation in `json`, each naming its key path; empty when valid.
  static std::vector<std::string> validate(const nlohmann::json& json);

  common::HostPort listen{"127.0.0.1", 8080};
  std::optional<TlsListenConfig> tls;  ///< the HTTPS listener, when configured
  AdminConfig admin;
  bool debug_headers = false;
  /// Peers whose X-Forwarded-* and Forwarded headers are kept and extended; from any other peer
  /// they are replaced (a client cannot claim to be someone else). Default: none.
  std::vector<Cidr> trusted_proxies;
  std::map<std::string, UpstreamConfig> upstreams;
  std::string default_upstream;
  std::vector<RouteConfig> routes;
  LimitsConfig limits;
  CutoverConfig cutover;
  int workers = 0;         ///< 0: one per core
  std::string access_log;  ///< "", "stdout" or a file path
  /// "etcd": the members service discovery reads ("http://HOST:PORT[,HOST:PORT...]"); empty: the
  /// members the config itself comes from (when it comes from etcd).
  std::string etcd;
  std::string hash;  ///< short content hash of the normalized JSON, for /routes

  /// The route named `name`, or nullptr.
  const RouteConfig* findRoute(const std::string& name) const;
  /// The config as JSON (the same schema it was read from).
  nlohmann::json toJson() const;
};

}  // namespace strangler::proxy
