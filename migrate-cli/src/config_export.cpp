#include "config_export.h"

#include <algorithm>
#include <array>
#include <cctype>
#include <cstdint>
#include <cstdio>
#include <map>
#include <set>
#include <sstream>
#include <tuple>

#include <nlohmann/json.hpp>

#include "strangler/proxy/path_pattern.h"
#include "strangler/proxy/route_table.h"
#include "strangler/proxy/router.h"

namespace strangler::cli {
namespace {

using proxy::PatternSegment;
using proxy::ProxyConfig;
using proxy::RouteConfig;
using proxy::Stage;

// The methods strangler-proxy tells apart; any other method only matches method-less routes.
constexpr std::array<const char*, 8> kKnownMethods = {"GET",    "HEAD",  "POST",    "PUT",
                                                      "DELETE", "PATCH", "OPTIONS", "TRACE"};
constexpr size_t kMethodClasses = kKnownMethods.size() + 1;  // + "any other method"
constexpr const char* kOtherMethod = "STRANGLER-OTHER";

// A route's match.path split into its segments before `/**`, and whether it ends in `/**`.
struct Shape {
  std::vector<PatternSegment> segments;
  bool subtree = false;

  bool literal() const {
    return std::all_of(segments.begin(), segments.end(), [](const PatternSegment& s) {
      return s.kind == PatternSegment::Kind::kLiteral;
    });
  }
  // "/api/drivers" for the literal segments (only meaningful when literal()).
  std::string literalPath() const {
    std::string out;
    for (const auto& s : segments)
      out += "/" + s.text;
    return out.empty() ? "/" : out;
  }
};

Shape shapeOf(const std::string& path) {
  Shape shape;
  auto pattern = proxy::PathPattern::parse(path);
  if (!pattern) return shape;  // validated configs never get here
  for (const auto& segment : pattern->segments) {
    if (segment.kind == PatternSegment::Kind::kSubtree) {
      shape.subtree = true;
      break;
    }
    shape.segments.push_back(segment);
  }
  return shape;
}

// The order strangler-proxy's route table prefers shapes in, for a path two shapes both match:
// any full match before any subtree, deeper subtrees first, then by the first segment where
// one has a literal and the other a parameter (literal first). Shapes that differ only in their
// literals never match the same path; their order is arbitrary but fixed.
struct SpecificityKey {
  bool subtree;
  size_t depth_rank;       // subtrees: deepest first
  std::vector<int> kinds;  // 0 literal, 1 parameter
  std::vector<std::string> texts;

  bool operator<(const SpecificityKey& other) const {
    return std::tie(subtree, depth_rank, kinds, texts) <
           std::tie(other.subtree, other.depth_rank, other.kinds, other.texts);
  }
};

SpecificityKey specificityKey(const Shape& shape) {
  SpecificityKey key{shape.subtree, shape.subtree ? SIZE_MAX - shape.segments.size() : 0, {}, {}};
  for (const auto& segment : shape.segments) {
    const bool param = segment.kind == PatternSegment::Kind::kParam;
    key.kinds.push_back(param ? 1 : 0);
    key.texts.push_back(param ? std::string() : segment.text);
  }
  return key;
}

std::string regexEscape(const std::string& text) {
  std::string out;
  for (const char c : text) {
    if (std::string_view("\\^$.|?*+()[]{}").find(c) != std::string_view::npos) out += '\\';
    out += c;
  }
  return out;
}

std::string shapeRegex(const Shape& shape) {
  std::string out = "^";
  for (const auto& segment : shape.segments) {
    out += '/';
    out += segment.kind == PatternSegment::Kind::kParam ? "[^/]+" : regexEscape(segment.text);
  }
  if (shape.subtree) return out + (shape.segments.empty() ? "/.*$" : "(/.*)?$");
  return out + (shape.segments.empty() ? "/$" : "/?$");
}

bool accepts(const RouteConfig& route, const std::string& method) {
  if (route.methods.empty()) return true;
  return std::find(route.methods.begin(), route.methods.end(), method) != route.methods.end();
}

bool idempotentName(const std::string& method) {
  return proxy::isIdempotent(method);
}

// A route that names a sync mapping: its unsafe methods go to the side owning the data (the
// monolith before `extracted`), are never shadowed, and never fall back to the monolith.
bool carriesData(const RouteConfig& route) {
  return !route.data.empty();
}

// What the proxy does with a data route's writes, and what no exported config does: the fenced
// cutover holds and switches strangler-proxy replicas only.
std::string dataNote(const RouteConfig& route, const std::string& proxy_name) {
  return "route '" + route.name + "' carries data '" + route.data +
         "': its writes go where this file's stage sends them (the monolith before extracted, the "
         "target after); " +
         proxy_name +
         " takes no part in the fenced cutover (routes extract --with-data / routes rollback "
         "hold and switch strangler-proxy replicas only): stop writes through " +
         proxy_name + ", then export and reload right after the flip";
}

// The methods of a route as a regex alternation ("GET|PUT"); "" when the route takes any method.
std::string methodAlternation(const std::vector<std::string>& methods) {
  std::string out;
  for (const auto& m : methods)
    out += (out.empty() ? "" : "|") + m;
  return out;
}

// rewrite.prefix → rewrite.to as strangler-proxy rewrites (on a segment boundary, one '/'
// dropped when `to` ends with '/'): a regex whose group `group` (an opening parenthesis, e.g.
// "(" or "(?<name>") captures the rest of the path, which goes after `to`. `rest` is what the
// rest may hold (".*" for a path, "[^?]*" when a query string may follow).
std::string rewriteRegex(const proxy::RewriteConfig& rewrite, const std::string& group = "(",
                         const std::string& rest = ".*") {
  const std::string p = "^" + regexEscape(rewrite.prefix);
  if (!rewrite.prefix.empty() && rewrite.prefix.back() == '/') return p + group + rest + ")$";
  if (!rewrite.to.empty() && rewrite.to.back() == '/') return p + "(?:/" + group + rest + "))?$";
  return p + group + "/" + rest + ")?$";
}

std::string durationSeconds(int ms) {
  char buffer[32];
  std::snprintf(buffer, sizeof buffer, "%d.%03ds", ms / 1000, ms % 1000);
  return buffer;
}

// Comments must stay on one line whatever a name holds.
std::string commentSafe(const std::string& text) {
  std::string out;
  for (const unsigned char c : text)
    out += c < 0x20 || c == 0x7f ? '?' : static_cast<char>(c);
  return out;
}

// ---------------------------------------------------------------------------------------------
// nginx

class NginxWriter {
 public:
  NginxWriter(const ProxyConfig& config, const std::string& source)
      : config_(config), source_(source), table_(config.routes) {}

  ExportedConfig write();

 private:
  struct Location {
    std::string modifier;  // "=", "~" or "" (prefix)
    std::string path;      // the path, prefix or regex
    int primary = -1;      // the route served inline; -1: the default upstream
    std::array<bool, kMethodClasses> handles{};  // methods the inline route serves here
    std::string comment;
  };

  void line(const std::string& text = "") {
    if (!text.empty()) out_ << std::string(indent_ * 4, ' ') << text;
    out_ << "\n";
  }
  void open(const std::string& head) {
    line(head + " {");
    ++indent_;
  }
  void close() {
    --indent_;
    line("}");
  }
  void note(const std::string& text) {
    notes_.push_back(text);
    line("# note: " + commentSafe(text));
  }

  // A double-quoted nginx string. `$` starts a variable in values that take variables, so
  // there it is spelled through a variable holding a literal dollar.
  // `raw_suffix` (variables) is appended inside the quotes as it is.
  std::string quote(const std::string& text, bool takes_variables,
                    const std::string& raw_suffix = "") {
    std::string out = "\"";
    for (const char c : text) {
      if (c == '"' || c == '\\') out += '\\';
      if (c == '$' && takes_variables) {
        out += "${strangler_dollar}";
        needs_dollar_ = true;
        continue;
      }
      out += c;
    }
    return out + raw_suffix + "\"";
  }
  void rewriteDirective(const proxy::RewriteConfig& rewrite) {
    line("rewrite " + quote(rewriteRegex(rewrite), false) + " " + quote(rewrite.to, true, "$1") +
         " break;");
  }
  // An identifier for variables and named locations: [A-Za-z0-9_] only, unique per route.
  std::string routeId(size_t index) const {
    std::string id = "r" + std::to_string(index) + "_";
    for (const unsigned char c : config_.routes[index].name)
      id += std::isalnum(c) ? static_cast<char>(c) : '_';
    return id;
  }
  std::string upstreamId(const std::string& name) const { return upstream_ids_.at(name); }
  const std::string& defaultUpstream() const { return config_.default_upstream; }

  void header();
  void upstreams();
  void variables();
  void server();
  void adminServer();
  void locations();
  void emitLocation(const Location& location);
  void dispatch(const std::array<bool, kMethodClasses>& handles);
  void routeBody(int index);
  void targetBody(size_t index);
  static std::string scheme(const proxy::UpstreamConfig& upstream);
  /// The proxy_ssl_* directives of an upstream with "tls" (nothing without).
  void upstreamTls(const proxy::UpstreamConfig& upstream);
  void proxyTo(const std::string& upstream, const std::string& route_label,
               const std::string& uri = "");
  void proxyHeaders(bool shadow);
  void namedLocations();
  void shadowLocations();

  std::array<bool, kMethodClasses> methodsOf(int route) const {
    std::array<bool, kMethodClasses> handles{};
    if (route < 0) {
      handles.fill(true);
      return handles;
    }
    const auto& r = config_.routes[static_cast<size_t>(route)];
    for (size_t i = 0; i < kKnownMethods.size(); ++i)
      handles[i] = accepts(r, kKnownMethods[i]);
    handles[kKnownMethods.size()] = r.methods.empty();
    return handles;
  }
  bool needsTarget(const RouteConfig& r) const {
    return r.stage == Stage::kCanary || r.stage == Stage::kExtracted;
  }
  bool fallsBack(const RouteConfig& r) const {
    return needsTarget(r) && r.fallback && r.target != config_.default_upstream;
  }

  const ProxyConfig& config_;
  std::string source_;
  proxy::RouteTable table_;
  std::ostringstream out_;
  int indent_ = 0;
  std::vector<std::string> notes_;
  std::map<std::string, std::string> upstream_ids_;
  std::vector<Shape> shapes_;
  std::vector<size_t> order_;
  bool needs_dispatch_ = false;
  bool needs_dollar_ = false;
};

ExportedConfig NginxWriter::write() {
  std::set<std::string> taken;
  for (const auto& [name, upstream] : config_.upstreams) {
    (void)upstream;
    std::string id;
    for (const unsigned char c : name)
      id += std::isalnum(c) || c == '-' || c == '_' ? static_cast<char>(c) : '_';
    while (!taken.insert(id).second)
      id += "_";
    upstream_ids_[name] = id;
  }
  for (const auto& route : config_.routes)
    shapes_.push_back(shapeOf(route.path));
  order_ = routesBySpecificity(config_);

  // The locations come first into a buffer: they decide which shared pieces the http block
  // needs (the method dispatch map, the dollar variable).
  std::ostringstream body;
  std::swap(out_, body);
  indent_ = 1;
  server();
  adminServer();
  std::swap(out_, body);

  indent_ = 0;
  header();
  line("http {");
  indent_ = 1;
  upstreams();
  variables();
  out_ << body.str();
  indent_ = 0;
  line("}");
  return {out_.str(), notes_};
}

void NginxWriter::header() {
  line("# nginx.conf generated by `strangler config export --format nginx` from " +
       commentSafe(source_) + " (config " + config_.hash + ").");
  line("# Self-contained: run it with  nginx -p PREFIX -c THIS_FILE -g 'daemon off;'");
  line("# (the pid file, error log and temp directories below are relative to PREFIX).");
  line("#");
  line("# Routing follows strangler-proxy's: the most specific route wins (exact paths, then");
  line("# templates in specificity order, then the deepest subtree); a request whose method a");
  line("# route does not take is routed as strangler-proxy would route it (the map");
  line("# $strangler_route); requests that match no route go to the default upstream.");
  line("#");
  line("# Paths: nginx matches locations on its own normalized path, which decodes every");
  line("# percent-escape (strangler-proxy decodes only unreserved characters and refuses an");
  line("# encoded '/').");
  line();
  line(config_.workers > 0 ? "worker_processes " + std::to_string(config_.workers) + ";"
                           : "worker_processes auto;");
  line("pid strangler-nginx.pid;");
  line("error_log strangler-nginx.error.log notice;");
  line();
  line("events {");
  line("    worker_connections 4096;");
  line("}");
  line();
}

void NginxWriter::upstreams() {
  line("client_body_temp_path client_body_temp;");
  line("proxy_temp_path proxy_temp;");
  line("fastcgi_temp_path fastcgi_temp;");
  line("uwsgi_temp_path uwsgi_temp;");
  line("scgi_temp_path scgi_temp;");
  if (config_.access_log.empty()) {
    line("access_log off;");
  } else if (config_.access_log == "stdout") {
    line("access_log /dev/stdout;");
  } else {
    line("access_log " + quote(config_.access_log, false) + ";");
  }
  line();
  line("client_max_body_size " + std::to_string(config_.limits.max_body_bytes) + ";");
  line("large_client_header_buffers 4 " + std::to_string(config_.limits.max_header_bytes) + ";");
  line("client_header_timeout " + std::to_string(config_.limits.header_timeout_ms) + "ms;");
  line("keepalive_timeout " + std::to_string(config_.limits.idle_timeout_ms) + "ms;");
  line("map_hash_bucket_size 128;");
  line();
  line("# Kept-alive connections to the upstreams; the client's Host passes through, the");
  line("# X-Strangler-* headers are the proxy's own (clients' copies are dropped).");
  proxyHeaders(false);
  line("proxy_hide_header X-Strangler-Route;");
  line("proxy_hide_header X-Strangler-Upstream;");
  const bool any_h2 = std::any_of(config_.upstreams.begin(), config_.upstreams.end(),
                                  [](const auto& entry) { return entry.second.h2; });
  if (any_h2) {
    // "protocol": "h2" upstreams are reached with grpc_pass (nginx speaks HTTP/2 to an upstream
    // only there); it takes its own header directives.
    line("# HTTP/2 upstreams (\"protocol\": \"h2\", gRPC): the same headers for grpc_pass.");
    line("grpc_set_header Host $http_host;");
    line("grpc_set_header X-Forwarded-For $proxy_add_x_forwarded_for;");
    line("grpc_set_header X-Forwarded-Proto $scheme;");
    line("grpc_set_header X-Strangler-Route \"\";");
    line("grpc_set_header X-Strangler-Upstream \"\";");
    line("grpc_set_header X-Strangler-Shadow \"\";");
    line("grpc_hide_header X-Strangler-Route;");
    line("grpc_hide_header X-Strangler-Upstream;");
    if (!config_.tls) {
      note(
          "gRPC clients need HTTP/2: nginx 1.22 takes it on a TLS listener (ALPN h2) or on a "
          "plain listener given 'http2' (which then refuses HTTP/1.1); add \"tls\" to the "
          "config for a listener that takes both");
    }
  }
  line();
  for (const auto& [name, upstream] : config_.upstreams) {
    line("# upstream \"" + commentSafe(name) + "\"" +
         (name == config_.default_upstream ? " (default)" : ""));
    std::string health;
    if (upstream.circuit_breaker) {
      // nginx's passive health check counts failures within fail_timeout rather than in a
      // row, then skips the server for fail_timeout: the closest thing to the breaker.
      health = " max_fails=" + std::to_string(upstream.circuit_breaker->consecutive_failures) +
               " fail_timeout=" + std::to_string((upstream.circuit_breaker->open_ms + 999) / 1000) +
               "s";
    } else if (upstream.eject_ms == 0) {
      health = " max_fails=0";
    } else {
      health =
          " max_fails=1 fail_timeout=" + std::to_string((upstream.eject_ms + 999) / 1000) + "s";
    }
    open("upstream " + upstreamId(name));
    if (!upstream.discovery_prefix.empty()) {
      // nginx cannot follow etcd: keep the file valid and say what to fill in.
      note("upstream '" + name + "' discovers its instances in etcd (" + upstream.discovery_prefix +
           "); nginx cannot follow that: replace the placeholder server marked down");
      line("server 127.0.0.1:9 down;");
    }
    for (const auto& endpoint : upstream.endpoints)
      line("server " + endpoint.toString() + health + ";");
    if (upstream.max_idle_connections > 0) {
      line("keepalive " +
           std::to_string(upstream.max_idle_connections *
                          std::max(1, static_cast<int>(upstream.endpoints.size()))) +
           ";");
    }
    close();
  }
  line();
}

void NginxWriter::proxyHeaders(bool shadow) {
  line("proxy_http_version 1.1;");
  if (shadow) {  // strangler-proxy never shadows an upgrade
    line("proxy_set_header Connection \"\";");
  } else {
    line("proxy_set_header Upgrade $http_upgrade;");
    line("proxy_set_header Connection $strangler_connection;");
  }
  line("proxy_set_header Host $http_host;");
  line("proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;");
  line("proxy_set_header X-Forwarded-Proto $scheme;");
  line("proxy_set_header X-Strangler-Route \"\";");
  line("proxy_set_header X-Strangler-Upstream \"\";");
  line(shadow ? "proxy_set_header X-Strangler-Shadow 1;"
              : "proxy_set_header X-Strangler-Shadow \"\";");
}

void NginxWriter::variables() {
  line("# WebSocket and other upgrades are passed on (strangler-proxy tunnels them after a 101);");
  line("# other requests keep the upstream connection alive.");
  open("map $http_upgrade $strangler_connection");
  line("default upgrade;");
  line("\"\" \"\";");
  close();
  line();
  line("# strangler-proxy's idempotent methods: the only ones that fall back.");
  open("map $request_method $strangler_idempotent");
  for (const char* m : kKnownMethods) {
    if (idempotentName(m)) line(std::string(m) + " 1;");
  }
  line("default 0;");
  close();
  line();
  const auto copiesSafeOnly = [](const RouteConfig& r) {
    return r.stage == Stage::kShadow && !(r.shadow && r.shadow->unsafe_methods);
  };
  if (std::any_of(config_.routes.begin(), config_.routes.end(), carriesData) ||
      std::any_of(config_.routes.begin(), config_.routes.end(), copiesSafeOnly)) {
    line("# strangler-proxy's safe methods: the only ones shadowed (unless a route allows unsafe");
    line("# ones), and on a route that carries data the only ones split by a canary or falling");
    line("# back; the others go to the side that owns the data.");
    open("map $request_method $strangler_safe");
    for (const char* m : kKnownMethods) {
      if (proxy::isSafe(m)) line(std::string(m) + " 1;");
    }
    line("default 0;");
    close();
    line();
  }

  if (needs_dispatch_) {
    line("# Where strangler-proxy routes a request (method and path): the named location of");
    line("# its route. A location jumps here for the methods its own route does not take.");
    open("map \"$request_method $uri\" $strangler_route");
    for (const size_t i : order_) {
      const auto& route = config_.routes[i];
      const std::string methods = methodAlternation(route.methods);
      const std::string regex = shapeRegex(shapes_[i]);
      line(quote("~^" + (methods.empty() ? std::string("[^ ]+") : "(" + methods + ")") + " " +
                     regex.substr(1),
                 false) +
           " @strangler_" + routeId(i) + ";");
    }
    line("default @strangler_default;");
    close();
    line();
  }

  for (size_t i = 0; i < config_.routes.size(); ++i) {
    const auto& route = config_.routes[i];
    const std::string id = routeId(i);
    if (route.stage == Stage::kCanary && route.target != config_.default_upstream) {
      std::string key = "$request_id";
      std::string sticky = "no sticky key: each request is split at random";
      std::string key_var;
      if (route.sticky && !route.sticky->header.empty()) {
        const auto& header = route.sticky->header;
        const bool expressible = std::all_of(header.begin(), header.end(), [](unsigned char c) {
          return std::isalnum(c) || c == '-' || c == '_';
        });
        if (expressible) {
          key_var = "$http_";
          for (const unsigned char c : header)
            key_var += c == '-' ? '_' : static_cast<char>(std::tolower(c));
          sticky = "sticky on header " + header;
        } else {
          note("route '" + route.name + "': sticky header '" + header +
               "' cannot be named as an nginx variable; its canary split is per request");
        }
      } else if (route.sticky) {
        const auto& cookie = route.sticky->cookie;
        const bool simple = std::all_of(cookie.begin(), cookie.end(), [](unsigned char c) {
          return std::isalnum(c) || c == '_';
        });
        if (simple) {
          key_var = "$cookie_" + cookie;
        } else {
          key_var = "$strangler_cookie_" + id;
          open("map $http_cookie " + key_var);
          line(
              quote("~(?:^|;)\\s*" + regexEscape(cookie) + "=\"?(?<strangler_c_" + id + ">[^;\"]*)",
                    false) +
              " $strangler_c_" + id + ";");
          line("default \"\";");
          close();
        }
        sticky = "sticky on cookie " + cookie;
      }
      line("# canary \"" + commentSafe(route.name) + "\": " + std::to_string(route.percent) +
           "% to " + commentSafe(route.target) + ", " + commentSafe(sticky) + ".");
      if (!key_var.empty()) {
        line("# Each key stays on one side and the share of keys is the percent, but nginx's");
        line("# split_clients hash (MurmurHash2) is not strangler-proxy's bucket hash: a given");
        line("# key may land on the other side than it does in strangler-proxy. Raising the");
        line("# percent only moves keys to the target, as in strangler-proxy.");
        open("map " + key_var + " $strangler_key_" + id);
        line("\"\" $request_id;");
        line("default " + key_var + ";");
        close();
        key = "$strangler_key_" + id;
      }
      const std::string seed = route.cohort.empty() ? route.name : route.cohort;
      std::string seed_text;
      for (const char c : seed)
        seed_text += c == '$' || c == '"' || c == '\\' ? '_' : c;
      const std::string split = carriesData(route) ? "$strangler_split_" : "$strangler_canary_";
      open("split_clients \"" + seed_text + ":" + key + "\" " + split + id);
      line(std::to_string(route.percent) + "% 1;");
      line("* 0;");
      close();
      if (carriesData(route)) {
        line("# \"" + commentSafe(route.name) + "\" carries data \"" + commentSafe(route.data) +
             "\": only safe methods (GET, HEAD, OPTIONS)");
        line("# are split; the others go to " + commentSafe(config_.default_upstream) +
             ", which owns the data until the flip.");
        open("map \"$strangler_safe:" + split + id + "\" $strangler_canary_" + id);
        line("\"1:1\" 1;");
        line("default 0;");
        close();
      }
      line();
    }
    if (route.stage == Stage::kShadow && route.shadow && route.shadow->sample > 0.0 &&
        route.shadow->sample < 1.0) {
      char percent[32];
      std::snprintf(percent, sizeof percent, "%.2f%%", route.shadow->sample * 100.0);
      line("# shadow \"" + commentSafe(route.name) + "\": a sample of the requests is mirrored.");
      open("split_clients \"$request_id\" $strangler_sample_" + id);
      line(std::string(percent) + " 1;");
      line("* 0;");
      close();
      line();
    }
    if (route.stage == Stage::kShadow && route.rewrite) {
      // The mirror subrequest only knows the client's request line, so the shadow copy's path
      // is rewritten from $request_uri (as the client spelled it).
      const std::string rest = "strangler_rest_" + id;
      const std::string query = "strangler_query_" + id;
      std::string regex = rewriteRegex(*route.rewrite, "(?<" + rest + ">", "[^?]*");
      regex.pop_back();  // '$': a query string may follow
      open("map $request_uri $strangler_shadow_uri_" + id);
      line(quote("~" + regex + "(?<" + query + ">\\?.*)?$", false) + " " +
           quote(route.rewrite->to, true, "$" + rest + "$" + query) + ";");
      line("default $request_uri;");
      close();
      line();
    }
  }
  if (needs_dollar_) {
    line("# A literal '$' for values that would otherwise read it as a variable.");
    line("geo $strangler_dollar { default \"$\"; }");
  }
}

void NginxWriter::server() {
  line("server {");
  ++indent_;
  if (config_.listen.port == 0) {
    note("listen " + config_.listen.toString() +
         ": port 0 means 'any free port' to strangler-proxy; give nginx a real port");
  }
  for (const auto& route : config_.routes) {
    if (carriesData(route)) note(dataNote(route, "nginx"));
  }
  line("listen " + config_.listen.toString() + ";");
  if (config_.tls) {
    // The HTTPS listener, with HTTP/2 by ALPN and the protocols and TLS 1.2 suites
    // strangler-proxy allows (ECDHE with AES-GCM or ChaCha20-Poly1305).
    if (config_.tls->listen.port == 0) {
      note("tls.listen " + config_.tls->listen.toString() +
           ": port 0 means 'any free port' to strangler-proxy; give nginx a real port");
    }
    line("listen " + config_.tls->listen.toString() + " ssl http2;");
    line("ssl_certificate " + quote(config_.tls->cert_file, false) + ";");
    line("ssl_certificate_key " + quote(config_.tls->key_file, false) + ";");
    line("ssl_protocols TLSv1.2 TLSv1.3;");
    line(
        "ssl_ciphers ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:"
        "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:"
        "ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305;");
  }
  line("# The jumps below chain (method → route → target → fallback).");
  line("recursive_error_pages on;");
  line();
  locations();
  namedLocations();
  shadowLocations();
  --indent_;
  line("}");
}

void NginxWriter::adminServer() {
  if (config_.admin.listen.port == 0) return;
  line();
  line("# strangler-proxy's admin address: health only (nginx has no routes API, metrics or");
  line("# reload endpoint; reload with `nginx -s reload`).");
  line("server {");
  ++indent_;
  line("listen " + config_.admin.listen.toString() + ";");
  open("location = /healthz");
  line("default_type text/plain;");
  line("return 200 \"ok\\n\";");
  close();
  open("location = /nginx_status");
  line("stub_status;");
  close();
  open("location /");
  line("return 404;");
  close();
  --indent_;
  line("}");
}

void NginxWriter::locations() {
  std::vector<Location> exact;
  std::vector<Location> regexes;
  std::vector<Location> prefixes;

  // Exact paths (literal routes, and the root of each literal subtree): the route for every
  // method is known here, so it comes from strangler-proxy's own route table.
  std::vector<std::string> exact_paths;
  for (size_t i = 0; i < config_.routes.size(); ++i) {
    const auto& shape = shapes_[i];
    if (!shape.literal()) continue;
    if (!shape.subtree) {
      exact_paths.push_back(shape.literalPath());
      if (!shape.segments.empty()) exact_paths.push_back(shape.literalPath() + "/");
    } else if (!shape.segments.empty()) {
      exact_paths.push_back(shape.literalPath());
    }
  }
  std::sort(exact_paths.begin(), exact_paths.end());
  exact_paths.erase(std::unique(exact_paths.begin(), exact_paths.end()), exact_paths.end());
  for (const auto& path : exact_paths) {
    std::array<int, kMethodClasses> routes{};
    for (size_t m = 0; m < kMethodClasses; ++m)
      routes[m] = table_.match(m < kKnownMethods.size() ? kKnownMethods[m] : kOtherMethod, path);
    // Served inline: the route that takes most methods here (a route over the default).
    std::map<int, int> votes;
    for (const int r : routes)
      ++votes[r];
    int primary = -1;
    int best = 0;
    for (const auto& [r, n] : votes) {
      if (r >= 0 && n > best) {
        primary = r;
        best = n;
      }
    }
    Location location{"=", path, primary, {}, ""};
    for (size_t m = 0; m < kMethodClasses; ++m)
      location.handles[m] = routes[m] == primary;
    exact.push_back(location);
  }

  // Templates and (when any subtree has a parameter) subtrees as regexes, most specific first;
  // literal subtrees as prefix locations, which nginx tries after every regex.
  const bool subtree_regexes = std::any_of(
      shapes_.begin(), shapes_.end(), [](const Shape& s) { return s.subtree && !s.literal(); });
  std::set<std::string> seen;
  bool root_subtree = false;
  for (const size_t i : order_) {
    const auto& shape = shapes_[i];
    const std::string key = shapeRegex(shape);
    if (!seen.insert(key).second) continue;  // one location per shape; its first route serves
    const int index = static_cast<int>(i);
    Location location{"", "", index, methodsOf(index), ""};
    if (!shape.subtree) {
      if (shape.literal()) continue;  // exact locations above
      location.modifier = "~";
      location.path = key;
      regexes.push_back(location);
    } else if (shape.segments.empty()) {
      root_subtree = true;
      location.path = "/";
      prefixes.push_back(location);
    } else if (subtree_regexes) {
      location.modifier = "~";
      location.path = key;
      regexes.push_back(location);
    } else {
      location.path = shape.literalPath() + "/";
      prefixes.push_back(location);
    }
  }
  if (!root_subtree) {
    Location location{"", "/", -1, methodsOf(-1), ""};
    prefixes.push_back(location);
  }

  line("# Exact paths: literal routes (also with a trailing '/', which strangler-proxy");
  line("# ignores) and the roots of subtrees ('/x/**' matches '/x' itself).");
  for (const auto& location : exact)
    emitLocation(location);
  if (!regexes.empty()) {
    line("# Templates and subtrees with parameters: nginx tries regexes in file order, so the");
    line("# most specific comes first.");
  }
  for (const auto& location : regexes)
    emitLocation(location);
  line("# Subtrees (nginx picks the longest prefix when no regex above matches).");
  for (const auto& location : prefixes)
    emitLocation(location);
}

void NginxWriter::emitLocation(const Location& location) {
  std::string what = "default upstream (no route)";
  if (location.primary >= 0) {
    const auto& route = config_.routes[static_cast<size_t>(location.primary)];
    what = "route \"" + commentSafe(route.name) + "\": " + commentSafe(route.path) + " (" +
           proxy::stageName(route.stage) + ")";
  }
  line("# " + what);
  open("location " + (location.modifier.empty() ? "" : location.modifier + " ") +
       quote(location.path, false));
  dispatch(location.handles);
  routeBody(location.primary);
  close();
}

void NginxWriter::dispatch(const std::array<bool, kMethodClasses>& handles) {
  if (std::all_of(handles.begin(), handles.end(), [](bool b) { return b; })) return;
  needs_dispatch_ = true;
  std::string taken;      // known methods served here, as a regex alternation
  std::string not_taken;  // known methods that jump
  for (size_t m = 0; m < kKnownMethods.size(); ++m) {
    std::string& list = handles[m] ? taken : not_taken;
    list += (list.empty() ? "" : "|") + std::string(kKnownMethods[m]);
  }
  line("error_page 471 = $strangler_route;");
  if (handles[kKnownMethods.size()]) {
    line("if ($request_method ~ \"^(" + not_taken + ")$\") { return 471; }");
  } else if (taken.empty()) {
    line("return 471;");
  } else {
    line("if ($request_method !~ \"^(" + taken + ")$\") { return 471; }");
  }
}

void NginxWriter::routeBody(int index) {
  if (index < 0) {
    proxyTo(defaultUpstream(), "-");
    return;
  }
  const auto i = static_cast<size_t>(index);
  const auto& route = config_.routes[i];
  const std::string id = routeId(i);
  switch (route.stage) {
    case Stage::kMonolith:
      proxyTo(defaultUpstream(), route.name);
      return;
    case Stage::kShadow:
      if (!route.shadow || route.shadow->sample > 0.0)
        line("mirror /_strangler/shadow/" + id + ";");
      proxyTo(defaultUpstream(), route.name);
      return;
    case Stage::kCanary:
      if (route.target != config_.default_upstream) {
        line("error_page 472 = @strangler_" + id + "_target;");
        line("if ($strangler_canary_" + id + ") { return 472; }");
      }
      proxyTo(defaultUpstream(), route.name);
      return;
    case Stage::kExtracted:
      targetBody(i);
      return;
  }
}

void NginxWriter::targetBody(size_t index) {
  const auto& route = config_.routes[index];
  if (fallsBack(route)) {
    line("error_page 473 = @strangler_" + routeId(index) + "_try;");
    line(carriesData(route) ? "if ($strangler_safe) { return 473; }"
                            : "if ($strangler_idempotent) { return 473; }");
  }
  if (route.rewrite) {
    rewriteDirective(*route.rewrite);
  }
  proxyTo(route.target, route.name);
}

std::string NginxWriter::scheme(const proxy::UpstreamConfig& upstream) {
  return upstream.tls ? "https://" : "http://";
}

void NginxWriter::upstreamTls(const proxy::UpstreamConfig& upstream) {
  if (!upstream.tls) return;
  // Verified as strangler-proxy verifies: against ca_file (else the system's store), for
  // server_name (else the endpoint's host), sent as SNI; `insecure` only when it says so.
  const auto& tls = *upstream.tls;
  const std::string module = upstream.h2 ? "grpc" : "proxy";
  line(module + "_ssl_server_name on;");
  if (!tls.server_name.empty()) line(module + "_ssl_name " + quote(tls.server_name, false) + ";");
  if (tls.insecure) {
    line(module + "_ssl_verify off;");
    return;
  }
  line(module + "_ssl_verify on;");
  line(module + "_ssl_trusted_certificate " +
       quote(tls.ca_file.empty() ? std::string("/etc/ssl/certs/ca-certificates.crt") : tls.ca_file,
             false) +
       ";");
}

void NginxWriter::proxyTo(const std::string& upstream, const std::string& route_label,
                          const std::string& uri) {
  const auto& u = config_.upstreams.at(upstream);
  // HTTP/2 to the upstream: grpc_pass, which sends the request's (rewritten) path as it is.
  const std::string module = u.h2 ? "grpc" : "proxy";
  if (u.h2) {
    if (!uri.empty()) {
      note("route '" + route_label + "' falls back to the HTTP/2 upstream '" + upstream +
           "' with grpc_pass, which takes no URI: the fallback gets the target's path");
    }
    line("grpc_pass " + std::string(u.tls ? "grpcs://" : "grpc://") + upstreamId(upstream) + ";");
  } else {
    line("proxy_pass " + scheme(u) + upstreamId(upstream) + uri + ";");
  }
  upstreamTls(u);
  line(module + "_connect_timeout " + std::to_string(u.connect_timeout_ms) + "ms;");
  line(module + "_read_timeout " + std::to_string(u.timeout_ms) + "ms;");
  line(module + "_send_timeout " + std::to_string(u.timeout_ms) + "ms;");
  if (config_.debug_headers) {
    line("add_header X-Strangler-Route " + quote(route_label, true) + " always;");
    line("add_header X-Strangler-Upstream " + quote(upstream, true) + " always;");
  }
}

void NginxWriter::namedLocations() {
  bool any = false;
  auto heading = [&] {
    if (any) return;
    any = true;
    line("# Named locations: the method jumps, the canary's target side, fallbacks.");
  };
  if (needs_dispatch_) {
    heading();
    for (size_t i = 0; i < config_.routes.size(); ++i) {
      open("location @strangler_" + routeId(i));
      routeBody(static_cast<int>(i));
      close();
    }
    open("location @strangler_default");
    routeBody(-1);
    close();
  }
  for (size_t i = 0; i < config_.routes.size(); ++i) {
    const auto& route = config_.routes[i];
    const std::string id = routeId(i);
    if (route.stage == Stage::kCanary && route.target != config_.default_upstream) {
      heading();
      open("location @strangler_" + id + "_target");
      targetBody(i);
      close();
    }
    if (!fallsBack(route)) continue;
    heading();
    line("# \"" + commentSafe(route.name) + "\" falls back to " +
         commentSafe(config_.default_upstream) +
         (carriesData(route) ? " for safe methods (it carries data: a write is never retried there)"
                             : " for idempotent methods") +
         " when the target fails (connect error, timeout, 5xx).");
    open("location @strangler_" + id + "_try");
    line("proxy_intercept_errors on;");
    line("error_page 500 502 503 504 = @strangler_" + id + "_fallback;");
    if (route.rewrite) {
      rewriteDirective(*route.rewrite);
    }
    proxyTo(route.target, route.name);
    close();
    open("location @strangler_" + id + "_fallback");
    // The target's path may have been rewritten; the monolith gets the client's.
    proxyTo(config_.default_upstream, route.name, "$request_uri");
    close();
  }
}

void NginxWriter::shadowLocations() {
  for (size_t i = 0; i < config_.routes.size(); ++i) {
    const auto& route = config_.routes[i];
    if (route.stage != Stage::kShadow || (route.shadow && route.shadow->sample <= 0.0)) continue;
    const std::string id = routeId(i);
    line("# Shadow copies of \"" + commentSafe(route.name) + "\" to " + commentSafe(route.target) +
         ". nginx only mirrors: the copy's answer is discarded,");
    line("# never compared with the monolith's (no mismatch counts or diffs).");
    open("location = /_strangler/shadow/" + id);
    line("internal;");
    if (carriesData(route)) {
      line("# It carries data: unsafe methods are never copied (the copy would write into the");
      line("# data the sync owns on the target's side), whatever shadow.unsafe_methods says.");
      line("if ($strangler_safe = 0) { return 204; }");
    } else if (!route.shadow || !route.shadow->unsafe_methods) {
      line("if ($strangler_safe = 0) { return 204; }");  // a copied PUT or DELETE writes
    }
    if (route.shadow && route.shadow->sample < 1.0)
      line("if ($strangler_sample_" + id + " = 0) { return 204; }");
    const auto& u = config_.upstreams.at(route.target);
    if (u.h2) {
      note("shadow copies of route '" + route.name + "' to the HTTP/2 upstream '" + route.target +
           "' are not exported: grpc_pass takes no URI for the copy");
      line("return 204;");
      close();
      continue;
    }
    proxyHeaders(true);
    line("proxy_pass " + scheme(u) + upstreamId(route.target) +
         (route.rewrite ? "$strangler_shadow_uri_" + id : std::string("$request_uri")) + ";");
    upstreamTls(u);
    line("proxy_connect_timeout " + std::to_string(u.connect_timeout_ms) + "ms;");
    line("proxy_read_timeout " + std::to_string(u.timeout_ms) + "ms;");
    close();
  }
}

// ---------------------------------------------------------------------------------------------
// Envoy

using ojson = nlohmann::ordered_json;

ojson socketAddress(const common::HostPort& address) {
  return {{"socket_address", {{"address", address.host}, {"port_value", address.port}}}};
}

bool isIpLiteral(const std::string& host) {
  if (host.find(':') != std::string::npos) return true;
  return !host.empty() && std::all_of(host.begin(), host.end(),
                                      [](unsigned char c) { return std::isdigit(c) || c == '.'; });
}

std::string envoyFormatLiteral(const std::string& text) {
  std::string out;
  for (const char c : text)
    out += c == '%' ? std::string("%%") : std::string(1, c);
  return out;
}

class EnvoyWriter {
 public:
  EnvoyWriter(const ProxyConfig& config, const std::string& source)
      : config_(config), source_(source) {}

  ExportedConfig write();

 private:
  ojson match(size_t index, const std::string& path_override,
              const std::vector<std::string>& methods) const;
  void addRoute(size_t index);
  ojson headers(const std::string& route) const;
  ojson rewrite(const RouteConfig& route) const;
  std::string timeoutOf(const std::string& upstream) const {
    return durationSeconds(config_.upstreams.at(upstream).timeout_ms);
  }
  void note(const RouteConfig& route, const std::string& text) {
    notes_.push_back("route '" + route.name + "': " + text);
    route_notes_[route.name].push_back(text);
  }

  const ProxyConfig& config_;
  std::string source_;
  ojson routes_ = ojson::array();
  std::vector<std::string> notes_;
  std::map<std::string, std::vector<std::string>> route_notes_;
};

ojson EnvoyWriter::match(size_t index, const std::string& path_override,
                         const std::vector<std::string>& methods) const {
  const Shape shape = shapeOf(config_.routes[index].path);
  ojson m = ojson::object();
  if (!path_override.empty()) {
    m["path"] = path_override;
  } else if (shape.subtree && shape.segments.empty()) {
    m["prefix"] = "/";
  } else if (shape.subtree && shape.literal()) {
    m["path_separated_prefix"] = shape.literalPath();
  } else {
    m["safe_regex"] = {{"regex", shapeRegex(shape)}};
  }
  if (!methods.empty()) {
    m["headers"] =
        ojson::array({{{"name", ":method"},
                       {"string_match",
                        {{"safe_regex", {{"regex", "^(" + methodAlternation(methods) + ")$"}}}}}}});
  }
  return m;
}

ojson EnvoyWriter::headers(const std::string& route) const {
  return ojson::array(
      {{{"header", {{"key", "X-Strangler-Route"}, {"value", envoyFormatLiteral(route)}}},
        {"append_action", "OVERWRITE_IF_EXISTS_OR_ADD"}},
       {{"header", {{"key", "X-Strangler-Upstream"}, {"value", "%UPSTREAM_CLUSTER%"}}},
        {"append_action", "OVERWRITE_IF_EXISTS_OR_ADD"}}});
}

ojson EnvoyWriter::rewrite(const RouteConfig& route) const {
  std::string substitution;
  for (const char c : route.rewrite->to)
    substitution += c == '\\' ? std::string("\\\\") : std::string(1, c);
  return {{"pattern", {{"regex", rewriteRegex(*route.rewrite)}}},
          {"substitution", substitution + "\\1"}};
}

void EnvoyWriter::addRoute(size_t index) {
  const auto& route = config_.routes[index];
  const Shape shape = shapeOf(route.path);
  const std::string& monolith = config_.default_upstream;

  // The method sets this route is split into. Without data, idempotent methods get the fallback
  // retries and (unless the route allows unsafe methods) the shadow copies. With data, only safe
  // methods are split by a canary, copied by a shadow or retried; the others go to the side that
  // owns the data (the monolith in canary, the target once extracted) and are never copied.
  const bool retries =
      route.stage == Stage::kExtracted && route.fallback && route.target != monolith;
  enum class Split { kNone, kIdempotent, kSafe };
  Split split = Split::kNone;
  if (carriesData(route)) {
    if (retries || route.stage == Stage::kShadow ||
        (route.stage == Stage::kCanary && route.target != monolith))
      split = Split::kSafe;
  } else if (retries) {
    split = Split::kIdempotent;
  } else if (route.stage == Stage::kShadow && !(route.shadow && route.shadow->unsafe_methods)) {
    split = Split::kSafe;  // a copied PUT or DELETE would write into the target
  }
  struct Part {
    std::vector<std::string> methods;  // empty: any
    bool treated;  // split (canary), copied (shadow) or retried (extracted with fallback)
  };
  std::vector<Part> parts;
  if (split != Split::kNone) {
    std::vector<std::string> treated;
    std::vector<std::string> rest;
    for (const char* m : kKnownMethods) {
      if (!accepts(route, m)) continue;
      const bool in = split == Split::kSafe ? proxy::isSafe(m) : idempotentName(m);
      (in ? treated : rest).push_back(m);
    }
    if (!treated.empty()) parts.push_back({treated, true});
    if (route.methods.empty()) {
      parts.push_back({{}, false});  // everything else, other methods included
    } else if (!rest.empty()) {
      parts.push_back({rest, false});
    }
  } else {
    parts.push_back({route.methods, true});
  }

  std::vector<std::string> paths = {""};
  if (!shape.subtree && shape.literal()) {
    paths = {shape.literalPath()};
    if (!shape.segments.empty()) paths.push_back(shape.literalPath() + "/");
  }

  for (const auto& part : parts) {
    for (const auto& path : paths) {
      auto entry = [&](const std::string& suffix) {
        ojson r;
        r["name"] = route.name + suffix;
        r["match"] = match(index, path, part.methods);
        return r;
      };
      auto finish = [&](ojson r) {
        if (config_.debug_headers) r["response_headers_to_add"] = headers(route.name);
        ojson meta = {{"route", route.name}, {"stage", proxy::stageName(route.stage)}};
        if (route_notes_.count(route.name)) meta["notes"] = route_notes_[route.name];
        r["metadata"] = {{"filter_metadata", {{"strangler", meta}}}};
        routes_.push_back(std::move(r));
      };
      switch (route.stage) {
        case Stage::kMonolith: {
          auto r = entry("");
          r["route"] = {{"cluster", monolith}, {"timeout", timeoutOf(monolith)}};
          finish(r);
          break;
        }
        case Stage::kShadow: {
          auto r = entry("");
          r["route"] = {{"cluster", monolith}, {"timeout", timeoutOf(monolith)}};
          const double sample = route.shadow ? route.shadow->sample : 1.0;
          if (part.treated && sample > 0.0) {
            ojson fraction = {{"numerator", static_cast<int>(sample * 1000000.0 + 0.5)},
                              {"denominator", "MILLION"}};
            ojson mirror = {{"cluster", route.target},
                            {"runtime_fraction", {{"default_value", fraction}}}};
            r["route"]["request_mirror_policies"] = ojson::array({mirror});
          }
          finish(r);
          break;
        }
        case Stage::kCanary: {
          if (route.target == monolith || !part.treated) {
            auto r = entry("");
            r["route"] = {{"cluster", monolith}, {"timeout", timeoutOf(monolith)}};
            finish(r);
            break;
          }
          if (!route.rewrite) {
            auto r = entry("");
            r["route"] = {
                {"weighted_clusters",
                 {{"clusters",
                   ojson::array({{{"name", route.target}, {"weight", route.percent}},
                                 {{"name", monolith}, {"weight", 100 - route.percent}}})}}},
                {"timeout", timeoutOf(route.target)}};
            finish(r);
            break;
          }
          // Weighted clusters share one rewrite; the target's path differs from the monolith's,
          // so the split is two entries: `percent` of the requests to the target, the rest on.
          auto to_target = entry(" (canary target)");
          to_target["match"]["runtime_fraction"] = {
              {"default_value", {{"numerator", route.percent}, {"denominator", "HUNDRED"}}},
              {"runtime_key", "strangler.canary." + route.name}};
          to_target["route"] = {{"cluster", route.target},
                                {"regex_rewrite", rewrite(route)},
                                {"timeout", timeoutOf(route.target)}};
          finish(to_target);
          auto rest = entry(" (canary monolith)");
          rest["route"] = {{"cluster", monolith}, {"timeout", timeoutOf(monolith)}};
          finish(rest);
          break;
        }
        case Stage::kExtracted: {
          auto r = entry("");
          r["route"] = {{"cluster", route.target}, {"timeout", timeoutOf(route.target)}};
          if (route.rewrite) r["route"]["regex_rewrite"] = rewrite(route);
          if (part.treated && retries) {
            r["route"]["retry_policy"] = {{"retry_on", "connect-failure,refused-stream,reset,5xx"},
                                          {"num_retries", 2}};
          }
          finish(r);
          break;
        }
      }
    }
  }
}

ExportedConfig EnvoyWriter::write() {
  for (const auto& route : config_.routes) {
    if (route.stage == Stage::kCanary && route.target != config_.default_upstream) {
      note(route, route.sticky
                      ? "Envoy's weighted clusters split each request at random: the canary is "
                        "not sticky per key (strangler-proxy keeps a key on one side)"
                      : "the canary split is per request, as in strangler-proxy without a key");
    }
    if (route.stage == Stage::kShadow) {
      note(route,
           "Envoy mirrors the request (Host gets a '-shadow' suffix) and discards the answer: "
           "nothing is compared" +
               std::string(route.rewrite ? "; the copy is sent without the path rewrite" : ""));
    }
    if (route.stage == Stage::kExtracted && route.fallback &&
        route.target != config_.default_upstream) {
      note(route, std::string("fallback: Envoy retries ") +
                      (carriesData(route) ? "safe requests (GET, HEAD, OPTIONS: the route "
                                            "carries data)"
                                          : "idempotent requests") +
                      " on the target and its outlier detection ejects failing endpoints; it "
                      "does not serve them from " +
                      config_.default_upstream);
    }
    if (carriesData(route)) {
      notes_.push_back(dataNote(route, "Envoy"));
      route_notes_[route.name].push_back(dataNote(route, "Envoy"));
    }
  }
  for (const size_t i : routesBySpecificity(config_))
    addRoute(i);
  ojson last = {
      {"name", "(no route)"},
      {"match", {{"prefix", "/"}}},
      {"route",
       {{"cluster", config_.default_upstream}, {"timeout", timeoutOf(config_.default_upstream)}}}};
  if (config_.debug_headers) last["response_headers_to_add"] = headers("-");
  routes_.push_back(last);

  ojson virtual_host = {
      {"name", "strangler"},
      {"domains", ojson::array({"*"})},
      {"routes", routes_},
      {"request_headers_to_remove",
       ojson::array({"x-strangler-route", "x-strangler-upstream", "x-strangler-shadow"})}};
  if (!config_.debug_headers) {
    virtual_host["response_headers_to_remove"] =
        ojson::array({"x-strangler-route", "x-strangler-upstream"});
  }

  ojson hcm = {
      {"@type",
       "type.googleapis.com/"
       "envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager"},
      {"stat_prefix", "strangler"},
      {"codec_type", "AUTO"},
      {"normalize_path", true},
      {"merge_slashes", true},
      {"path_with_escaped_slashes_action", "REJECT_REQUEST"},
      {"max_request_headers_kb", std::min(8192, (config_.limits.max_header_bytes + 1023) / 1024)},
      {"request_headers_timeout", durationSeconds(config_.limits.header_timeout_ms)},
      {"common_http_protocol_options",
       {{"idle_timeout", durationSeconds(config_.limits.idle_timeout_ms)}}},
      {"upgrade_configs", ojson::array({{{"upgrade_type", "websocket"}}})},
      {"route_config", {{"name", "strangler"}, {"virtual_hosts", ojson::array({virtual_host})}}},
      {"http_filters",
       ojson::array(
           {{{"name", "envoy.filters.http.router"},
             {"typed_config",
              {{"@type",
                "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"}}}}})}};

  ojson clusters = ojson::array();
  for (const auto& [name, upstream] : config_.upstreams) {
    const bool static_ips = std::all_of(upstream.endpoints.begin(), upstream.endpoints.end(),
                                        [](const auto& e) { return isIpLiteral(e.host); });
    ojson endpoints = ojson::array();
    for (const auto& e : upstream.endpoints)
      endpoints.push_back({{"endpoint", {{"address", socketAddress(e)}}}});
    ojson cluster = {
        {"name", name},
        {"type", static_ips ? "STATIC" : "STRICT_DNS"},
        {"connect_timeout", durationSeconds(upstream.connect_timeout_ms)},
        {"lb_policy", "ROUND_ROBIN"},
        {"load_assignment",
         {{"cluster_name", name}, {"endpoints", ojson::array({{{"lb_endpoints", endpoints}}})}}}};
    if (upstream.tls) {
      // Verified as strangler-proxy verifies: against ca_file (else Debian's CA bundle), SNI and
      // the name checked are server_name (else nothing is sent as SNI and the endpoint's address
      // must be in the certificate); `insecure` leaves out the validation context.
      ojson tls = {{"@type",
                    "type.googleapis.com/"
                    "envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext"}};
      const auto& t = *upstream.tls;
      if (!t.server_name.empty()) tls["sni"] = t.server_name;
      if (!t.insecure) {
        ojson validation = {
            {"trusted_ca",
             {{"filename", t.ca_file.empty() ? std::string("/etc/ssl/certs/ca-certificates.crt")
                                             : t.ca_file}}}};
        if (!t.server_name.empty()) {
          validation["match_typed_subject_alt_names"] =
              ojson::array({{{"san_type", "DNS"}, {"matcher", {{"exact", t.server_name}}}}});
        }
        tls["common_tls_context"] = {{"validation_context", validation}};
      }
      cluster["transport_socket"] = {{"name", "envoy.transport_sockets.tls"},
                                     {"typed_config", tls}};
    }
    if (upstream.h2) {
      // "protocol": "h2": HTTP/2 to the endpoints (gRPC); over TLS, ALPN h2.
      cluster["typed_extension_protocol_options"] = {
          {"envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
           {{"@type", "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions"},
            {"explicit_http_config", {{"http2_protocol_options", ojson::object()}}}}}};
      if (cluster.contains("transport_socket")) {
        cluster["transport_socket"]["typed_config"]["common_tls_context"]["alpn_protocols"] =
            ojson::array({"h2"});
      }
    }
    if (upstream.circuit_breaker) {
      cluster["outlier_detection"] = {
          {"consecutive_5xx", upstream.circuit_breaker->consecutive_failures},
          {"consecutive_gateway_failure", upstream.circuit_breaker->consecutive_failures},
          {"interval", "1s"},
          {"base_ejection_time", durationSeconds(upstream.circuit_breaker->open_ms)},
          {"max_ejection_percent", 100}};
    }
    clusters.push_back(cluster);
  }

  ojson bootstrap;
  // JSON has no comments and Envoy rejects unknown fields: where the file came from and what
  // it cannot express go into the node's free-form metadata (and each route's).
  bootstrap["node"] = {{"id", "strangler"},
                       {"cluster", "strangler"},
                       {"metadata",
                        {{"generated_by", "strangler config export --format envoy"},
                         {"source", source_},
                         {"config_hash", config_.hash},
                         {"notes", notes_}}}};
  bootstrap["admin"] = {{"address", socketAddress(config_.admin.listen)}};
  const ojson http_filter = {{"name", "envoy.filters.network.http_connection_manager"},
                             {"typed_config", hcm}};
  ojson listeners = ojson::array(
      {{{"name", "strangler"},
        {"address", socketAddress(config_.listen)},
        {"filter_chains", ojson::array({{{"filters", ojson::array({http_filter})}}})}}});
  if (config_.tls) {
    // The HTTPS listener: the same routes, HTTP/2 or HTTP/1.1 by ALPN, TLS 1.2 at least.
    const ojson downstream = {
        {"@type",
         "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext"},
        {"common_tls_context",
         {{"alpn_protocols", ojson::array({"h2", "http/1.1"})},
          {"tls_params", {{"tls_minimum_protocol_version", "TLSv1_2"}}},
          {"tls_certificates",
           ojson::array({{{"certificate_chain", {{"filename", config_.tls->cert_file}}},
                          {"private_key", {{"filename", config_.tls->key_file}}}}})}}}};
    listeners.push_back({{"name", "strangler_tls"},
                         {"address", socketAddress(config_.tls->listen)},
                         {"filter_chains", ojson::array({{{"filters", ojson::array({http_filter})},
                                                          {"transport_socket",
                                                           {{"name", "envoy.transport_sockets.tls"},
                                                            {"typed_config", downstream}}}}})}});
  }
  bootstrap["static_resources"] = {{"listeners", listeners}, {"clusters", clusters}};
  return {bootstrap.dump(2) + "\n", notes_};
}

}  // namespace

std::vector<size_t> routesBySpecificity(const ProxyConfig& config) {
  std::vector<Shape> shapes;
  for (const auto& route : config.routes)
    shapes.push_back(shapeOf(route.path));
  std::vector<size_t> order(config.routes.size());
  for (size_t i = 0; i < order.size(); ++i)
    order[i] = i;
  std::vector<SpecificityKey> keys;
  for (const auto& shape : shapes)
    keys.push_back(specificityKey(shape));
  std::stable_sort(order.begin(), order.end(),
                   [&](size_t a, size_t b) { return keys[a] < keys[b]; });
  return order;
}

std::string pathRegex(const std::string& route_path) {
  return shapeRegex(shapeOf(route_path));
}

ExportedConfig exportNginx(const ProxyConfig& config, const std::string& source) {
  return NginxWriter(config, source).write();
}

ExportedConfig exportEnvoy(const ProxyConfig& config, const std::string& source) {
  return EnvoyWriter(config, source).write();
}

}  // namespace strangler::cli
