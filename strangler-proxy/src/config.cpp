#include "strangler/proxy/config.h"

#include <algorithm>
#include <fstream>
#include <functional>
#include <set>
#include <sstream>

#include <nlohmann/json.hpp>

#include "strangler/acl/response_translators.h"
#include "strangler/common/etcd_client.h"
#include "strangler/proxy/path_pattern.h"

namespace strangler::proxy {
namespace {

using nlohmann::json;

const std::set<std::string> kMethods = {"GET",    "HEAD",  "POST",    "PUT",
                                        "DELETE", "PATCH", "OPTIONS", "TRACE"};

// A sync mapping name: what `strangler sync --mapping NAME` accepts.
bool isMappingName(const std::string& text) {
  return !text.empty() && std::all_of(text.begin(), text.end(), [](unsigned char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
           c == '-';
  });
}

std::string describe(const json& value) {
  std::string text = value.dump();
  if (text.size() > 60) text = text.substr(0, 57) + "...";
  return text;
}

// Walks the document once, collecting every violation with its key path and filling the
// config as it goes; the config is only handed out when no violation was found.
class Checker {
 public:
  std::vector<std::string> errors;

  void fail(const std::string& path, const std::string& message) {
    errors.push_back(path + ": " + message);
  }

  // Reports keys of `object` that are not in `allowed`.
  void onlyKeys(const json& object, const std::string& path,
                std::initializer_list<const char*> allowed) {
    for (const auto& item : object.items()) {
      const std::string& key = item.key();  // not a structured binding: clang 14 cannot capture one
      const bool known = std::any_of(allowed.begin(), allowed.end(),
                                     [&](const char* name) { return key == name; });
      if (!known) fail(join(path, key), "unknown key");
    }
  }

  static std::string join(const std::string& path, const std::string& key) {
    return path.empty() ? key : path + "." + key;
  }

  bool isObject(const json& value, const std::string& path) {
    if (value.is_object()) return true;
    fail(path, "must be an object, not " + describe(value));
    return false;
  }

  std::optional<std::string> string(const json& value, const std::string& path,
                                    bool non_empty = true) {
    if (!value.is_string()) {
      fail(path, "must be a string, not " + describe(value));
      return std::nullopt;
    }
    auto text = value.get<std::string>();
    if (non_empty && text.empty()) {
      fail(path, "must not be empty");
      return std::nullopt;
    }
    return text;
  }

  std::optional<int64_t> integer(const json& value, const std::string& path, int64_t low,
                                 int64_t high) {
    if (!value.is_number_integer()) {
      fail(path, describe(value) + " is not an integer");
      return std::nullopt;
    }
    const auto number = value.get<int64_t>();
    if (number < low || number > high) {
      fail(path, std::to_string(number) + " is not in " + std::to_string(low) + ".." +
                     std::to_string(high));
      return std::nullopt;
    }
    return number;
  }

  std::optional<bool> boolean(const json& value, const std::string& path) {
    if (!value.is_boolean()) {
      fail(path, "must be true or false, not " + describe(value));
      return std::nullopt;
    }
    return value.get<bool>();
  }

  // An absolute http:// URL with a host, an optional port and a path: what the admin API can
  // fetch with a plain HTTP client (no https, no credentials, no fragment).
  std::optional<std::string> httpUrl(const json& value, const std::string& path) {
    const auto text = string(value, path);
    if (!text) return std::nullopt;
    const std::string scheme = "http://";
    const auto bad = [&](const std::string& why) {
      fail(path, "'" + *text + "' is not an http:// URL: " + why);
      return std::nullopt;
    };
    if (text->compare(0, scheme.size(), scheme) != 0) return bad("it must start with http://");
    for (const unsigned char c : *text) {
      if (c <= 0x20 || c >= 0x7f) return bad("spaces, control and non-ASCII characters");
    }
    if (text->find('#') != std::string::npos) return bad("no fragment allowed");
    const auto rest = text->substr(scheme.size());
    const auto authority = rest.substr(0, rest.find_first_of("/?"));
    if (authority.find('@') != std::string::npos) return bad("no credentials allowed");
    const auto bracket = authority.rfind(']');
    const auto colon = authority.rfind(':');
    const bool has_port =
        colon != std::string::npos && (bracket == std::string::npos || colon > bracket);
    auto parsed = common::parseHostPort(has_port ? authority : authority + ":80");
    if (!parsed || parsed->host.empty()) return bad("no valid HOST[:PORT]");
    if (parsed->port == 0) return bad("port 0");
    return text;
  }

  std::optional<common::HostPort> address(const json& value, const std::string& path,
                                          bool allow_port0) {
    const auto text = string(value, path);
    if (!text) return std::nullopt;
    auto parsed = common::parseHostPort(*text);
    if (!parsed) {
      fail(path, parsed.error().message);
      return std::nullopt;
    }
    if (!allow_port0 && parsed->port == 0) {
      fail(path, "'" + *text + "' needs a port other than 0");
      return std::nullopt;
    }
    return parsed.value();
  }
};

void readUpstream(Checker& check, const std::string& name, const json& value,
                  const std::string& path, ProxyConfig& config) {
  if (!check.isObject(value, path)) return;
  check.onlyKeys(value, path,
                 {"endpoints", "discovery", "timeout_ms", "connect_timeout_ms", "eject_ms",
                  "resolve_ms", "max_idle_connections", "circuit_breaker", "tls", "protocol"});
  UpstreamConfig upstream;
  upstream.name = name;
  if (name.empty()) check.fail(path, "upstream names must not be empty");
  if (value.contains("discovery")) {
    const auto discovery_path = Checker::join(path, "discovery");
    const auto& discovery = value["discovery"];
    if (value.contains("endpoints")) {
      check.fail(path, "needs exactly one of \"endpoints\" or \"discovery\"");
    } else if (check.isObject(discovery, discovery_path)) {
      check.onlyKeys(discovery, discovery_path, {"etcd_prefix"});
      if (!discovery.contains("etcd_prefix")) {
        check.fail(discovery_path + ".etcd_prefix", "is required");
      } else if (auto prefix =
                     check.string(discovery["etcd_prefix"], discovery_path + ".etcd_prefix")) {
        if (prefix->front() != '/') {
          check.fail(discovery_path + ".etcd_prefix", "'" + *prefix + "' must start with '/'");
        } else {
          upstream.discovery_prefix = *prefix;
          while (upstream.discovery_prefix.size() > 1 && upstream.discovery_prefix.back() == '/')
            upstream.discovery_prefix.pop_back();
        }
      }
    }
  } else if (!value.contains("endpoints")) {
    check.fail(Checker::join(path, "endpoints"), "is required (or \"discovery\")");
  } else if (const auto& endpoints = value["endpoints"];
             !endpoints.is_array() || endpoints.empty()) {
    check.fail(Checker::join(path, "endpoints"), "must be a non-empty array of \"HOST:PORT\"");
  } else {
    for (size_t i = 0; i < endpoints.size(); ++i) {
      if (auto endpoint =
              check.address(endpoints[i], path + ".endpoints[" + std::to_string(i) + "]", false)) {
        upstream.endpoints.push_back(*endpoint);
      }
    }
  }
  auto readMs = [&](const char* key, int& out, int64_t low, int64_t high) {
    if (!value.contains(key)) return;
    if (auto number = check.integer(value[key], Checker::join(path, key), low, high)) {
      out = static_cast<int>(*number);
    }
  };
  readMs("timeout_ms", upstream.timeout_ms, 1, 3600000);
  readMs("connect_timeout_ms", upstream.connect_timeout_ms, 1, 600000);
  readMs("eject_ms", upstream.eject_ms, 0, 3600000);
  readMs("resolve_ms", upstream.resolve_ms, 0, 86400000);
  readMs("max_idle_connections", upstream.max_idle_connections, 0, 100000);
  if (value.contains("circuit_breaker")) {
    const auto cb_path = Checker::join(path, "circuit_breaker");
    const auto& cb = value["circuit_breaker"];
    if (check.isObject(cb, cb_path)) {
      check.onlyKeys(cb, cb_path, {"consecutive_failures", "open_ms"});
      CircuitBreakerConfig breaker;
      if (cb.contains("consecutive_failures")) {
        if (auto n = check.integer(cb["consecutive_failures"], cb_path + ".consecutive_failures", 1,
                                   1000000)) {
          breaker.consecutive_failures = static_cast<int>(*n);
        }
      }
      if (cb.contains("open_ms")) {
        if (auto n = check.integer(cb["open_ms"], cb_path + ".open_ms", 1, 3600000)) {
          breaker.open_ms = static_cast<int>(*n);
        }
      }
      upstream.circuit_breaker = breaker;
    }
  }
  if (value.contains("tls")) {
    const auto tls_path = Checker::join(path, "tls");
    const auto& tls = value["tls"];
    if (check.isObject(tls, tls_path)) {
      check.onlyKeys(tls, tls_path, {"ca_file", "server_name", "insecure"});
      UpstreamTlsConfig parsed;
      if (tls.contains("ca_file")) {
        if (auto f = check.string(tls["ca_file"], tls_path + ".ca_file")) parsed.ca_file = *f;
      }
      if (tls.contains("server_name")) {
        if (auto n = check.string(tls["server_name"], tls_path + ".server_name"))
          parsed.server_name = *n;
      }
      if (tls.contains("insecure")) {
        if (auto b = check.boolean(tls["insecure"], tls_path + ".insecure")) parsed.insecure = *b;
      }
      if (parsed.insecure && !parsed.ca_file.empty())
        check.fail(tls_path, "\"insecure\": true verifies nothing: drop \"ca_file\" or it");
      upstream.tls = parsed;
    }
  }
  if (value.contains("protocol")) {
    const auto protocol_path = Checker::join(path, "protocol");
    if (auto p = check.string(value["protocol"], protocol_path)) {
      if (*p == "h2") {
        upstream.h2 = true;
      } else if (*p != "http1") {
        check.fail(protocol_path, "'" + *p + "' is not \"http1\" or \"h2\"");
      }
    }
  }
  config.upstreams[name] = std::move(upstream);
}

void readRoute(Checker& check, const json& value, const std::string& path, ProxyConfig& config,
               std::map<std::string, std::string>& names) {
  if (!check.isObject(value, path)) return;
  check.onlyKeys(value, path,
                 {"name", "match", "target", "stage", "percent", "sticky", "fallback", "rewrite",
                  "cohort", "data", "shadow", "plan", "gates", "max_body_bytes"});
  RouteConfig route;
  if (!value.contains("name")) {
    check.fail(path + ".name", "is required");
  } else if (auto name = check.string(value["name"], path + ".name")) {
    route.name = *name;
    if (auto [it, inserted] = names.emplace(*name, path); !inserted) {
      check.fail(path + ".name", "'" + *name + "' is already the name of " + it->second);
    }
  }
  if (!value.contains("match")) {
    check.fail(path + ".match", "is required");
  } else if (const auto& match = value["match"]; check.isObject(match, path + ".match")) {
    check.onlyKeys(match, path + ".match", {"path", "methods"});
    if (!match.contains("path")) {
      check.fail(path + ".match.path", "is required");
    } else if (auto text = check.string(match["path"], path + ".match.path")) {
      if (auto pattern = PathPattern::parse(*text)) {
        route.path = *text;
      } else {
        check.fail(path + ".match.path", "'" + *text + "' " + pattern.error().message);
      }
    }
    if (match.contains("methods")) {
      const auto& methods = match["methods"];
      if (!methods.is_array()) {
        check.fail(path + ".match.methods", "must be an array of method names");
      } else {
        for (size_t i = 0; i < methods.size(); ++i) {
          const auto item_path = path + ".match.methods[" + std::to_string(i) + "]";
          auto method = check.string(methods[i], item_path);
          if (!method) continue;
          if (!kMethods.count(*method)) {
            check.fail(item_path, "'" + *method + "' is not a known HTTP method (upper case)");
          } else if (std::find(route.methods.begin(), route.methods.end(), *method) !=
                     route.methods.end()) {
            check.fail(item_path, "'" + *method + "' is listed twice");
          } else {
            route.methods.push_back(*method);
          }
        }
      }
    }
  }
  if (!value.contains("stage")) {
    check.fail(path + ".stage", "is required (monolith, shadow, canary or extracted)");
  } else if (auto text = check.string(value["stage"], path + ".stage")) {
    if (auto stage = parseStage(*text)) {
      route.stage = *stage;
    } else {
      check.fail(path + ".stage",
                 "'" + *text + "' is not one of monolith, shadow, canary, extracted");
    }
  }
  if (value.contains("target")) {
    if (auto target = check.string(value["target"], path + ".target")) {
      route.target = *target;
      if (!config.upstreams.count(*target)) {
        check.fail(path + ".target", "'" + *target + "' is not a defined upstream");
      }
    }
  } else if (value.contains("stage") && route.stage != Stage::kMonolith) {
    check.fail(path + ".target", std::string("is required in stage ") + stageName(route.stage));
  }
  if (value.contains("percent")) {
    const bool canary = route.stage == Stage::kCanary;
    if (auto n =
            check.integer(value["percent"], path + ".percent", canary ? 1 : 0, canary ? 99 : 100)) {
      route.percent = static_cast<int>(*n);
    }
  } else if (route.stage == Stage::kCanary) {
    check.fail(path + ".percent", "is required in stage canary (1..99)");
  }
  if (value.contains("sticky")) {
    const auto& sticky = value["sticky"];
    if (check.isObject(sticky, path + ".sticky")) {
      check.onlyKeys(sticky, path + ".sticky", {"header", "cookie"});
      StickyConfig config_sticky;
      if (sticky.contains("header") == sticky.contains("cookie")) {
        check.fail(path + ".sticky", "needs exactly one of \"header\" or \"cookie\"");
      } else if (sticky.contains("header")) {
        if (auto h = check.string(sticky["header"], path + ".sticky.header"))
          config_sticky.header = *h;
      } else if (auto c = check.string(sticky["cookie"], path + ".sticky.cookie")) {
        config_sticky.cookie = *c;
      }
      route.sticky = config_sticky;
    }
  }
  if (value.contains("fallback")) {
    if (auto b = check.boolean(value["fallback"], path + ".fallback")) route.fallback = *b;
  }
  if (value.contains("rewrite")) {
    const auto& rewrite = value["rewrite"];
    if (check.isObject(rewrite, path + ".rewrite")) {
      check.onlyKeys(rewrite, path + ".rewrite", {"prefix", "to"});
      RewriteConfig config_rewrite;
      for (const char* key : {"prefix", "to"}) {
        const auto key_path = path + ".rewrite." + key;
        if (!rewrite.contains(key)) {
          check.fail(key_path, "is required");
        } else if (auto text = check.string(rewrite[key], key_path)) {
          if (text->front() != '/') check.fail(key_path, "'" + *text + "' must start with '/'");
          (std::string(key) == "prefix" ? config_rewrite.prefix : config_rewrite.to) = *text;
        }
      }
      route.rewrite = config_rewrite;
    }
  }
  if (value.contains("max_body_bytes")) {
    if (auto n =
            check.integer(value["max_body_bytes"], path + ".max_body_bytes", 0, int64_t{1} << 50))
      route.max_body_bytes = *n;
  }
  if (value.contains("cohort")) {
    if (auto cohort = check.string(value["cohort"], path + ".cohort")) route.cohort = *cohort;
  }
  if (value.contains("data")) {
    if (auto mapping = check.string(value["data"], path + ".data")) {
      if (isMappingName(*mapping)) {
        route.data = *mapping;
      } else {
        check.fail(path + ".data", "'" + *mapping +
                                       "' is not a sync mapping name (letters, digits, '_' "
                                       "and '-')");
      }
    }
  }
  if (value.contains("shadow")) {
    const auto& shadow = value["shadow"];
    if (check.isObject(shadow, path + ".shadow")) {
      check.onlyKeys(shadow, path + ".shadow",
                     {"ignore", "sample", "unsafe_methods", "acl", "noise_filter", "headers",
                      "max_body_bytes", "max_inflight", "max_rate"});
      ShadowConfig config_shadow;
      if (shadow.contains("max_body_bytes")) {
        if (auto n = check.integer(shadow["max_body_bytes"], path + ".shadow.max_body_bytes", 0,
                                   64 << 20))
          config_shadow.max_body_bytes = *n;
      }
      if (shadow.contains("max_inflight")) {
        if (auto n =
                check.integer(shadow["max_inflight"], path + ".shadow.max_inflight", 0, 1'000'000))
          config_shadow.max_inflight = static_cast<int>(*n);
      }
      if (shadow.contains("max_rate")) {
        const auto& rate = shadow["max_rate"];
        if (!rate.is_number() || rate.get<double>() < 0.0 || rate.get<double>() > 1e6) {
          check.fail(path + ".shadow.max_rate",
                     describe(rate) + " is not a number of copies per second in 0..1000000");
        } else {
          config_shadow.max_rate = rate.get<double>();
        }
      }
      if (shadow.contains("ignore")) {
        const auto& ignore = shadow["ignore"];
        if (!ignore.is_array()) {
          check.fail(path + ".shadow.ignore", "must be an array of JSON pointers");
        } else {
          for (size_t i = 0; i < ignore.size(); ++i) {
            const auto item_path = path + ".shadow.ignore[" + std::to_string(i) + "]";
            auto pointer = check.string(ignore[i], item_path, false);
            if (!pointer) continue;
            if (!pointer->empty() && pointer->front() != '/') {
              check.fail(item_path, "'" + *pointer + "' is not a JSON pointer (starts with '/')");
            } else {
              config_shadow.ignore.push_back(*pointer);
            }
          }
        }
      }
      if (shadow.contains("sample")) {
        const auto& sample = shadow["sample"];
        if (!sample.is_number() || sample.get<double>() < 0.0 || sample.get<double>() > 1.0) {
          check.fail(path + ".shadow.sample", describe(sample) + " is not a number in 0..1");
        } else {
          config_shadow.sample = sample.get<double>();
        }
      }
      if (shadow.contains("unsafe_methods")) {
        if (auto b = check.boolean(shadow["unsafe_methods"], path + ".shadow.unsafe_methods")) {
          config_shadow.unsafe_methods = *b;
        }
      }
      if (shadow.contains("acl")) {
        if (auto translator = check.string(shadow["acl"], path + ".shadow.acl")) {
          const auto translators = acl::responseTranslatorNames();
          if (std::find(translators.begin(), translators.end(), *translator) == translators.end()) {
            std::string known;
            for (const auto& name : translators)
              known += (known.empty() ? "" : ", ") + name;
            check.fail(path + ".shadow.acl",
                       "'" + *translator + "' is not a known response translator (" + known + ")");
          } else {
            config_shadow.acl = *translator;
          }
        }
      }
      if (shadow.contains("noise_filter")) {
        if (auto b = check.boolean(shadow["noise_filter"], path + ".shadow.noise_filter"))
          config_shadow.noise_filter = *b;
      }
      if (shadow.contains("headers")) {
        const auto& headers = shadow["headers"];
        if (!headers.is_array()) {
          check.fail(path + ".shadow.headers", "must be an array of header names");
        } else {
          config_shadow.headers.clear();
          for (size_t i = 0; i < headers.size(); ++i) {
            if (auto name =
                    check.string(headers[i], path + ".shadow.headers[" + std::to_string(i) + "]"))
              config_shadow.headers.push_back(*name);
          }
        }
      }
      route.shadow = config_shadow;
    }
  }
  if (value.contains("plan")) {
    const auto& plan = value["plan"];
    if (!plan.is_array() || plan.empty()) {
      check.fail(path + ".plan",
                 "must be a non-empty array of steps (\"shadow\", a canary percent 1..99, "
                 "\"extracted\")");
    } else {
      for (size_t i = 0; i < plan.size(); ++i) {
        const auto step_path = path + ".plan[" + std::to_string(i) + "]";
        const auto& step = plan[i];
        if (step.is_number_integer()) {
          const auto percent = step.get<int64_t>();
          if (percent < 1 || percent > 99) {
            check.fail(step_path, std::to_string(percent) + " is not a canary percent in 1..99");
          } else {
            route.plan.push_back({Stage::kCanary, static_cast<int>(percent)});
          }
        } else if (step.is_string() && (step == "shadow" || step == "extracted")) {
          route.plan.push_back({step == "shadow" ? Stage::kShadow : Stage::kExtracted, 0});
        } else {
          check.fail(step_path, describe(step) +
                                    " is not a step (\"shadow\", a canary percent 1..99, "
                                    "\"extracted\")");
        }
      }
      if (!route.plan.empty() && route.plan.back().stage != Stage::kExtracted)
        check.fail(path + ".plan", "must end with \"extracted\"");
    }
  }
  if (value.contains("gates")) {
    const auto& gates = value["gates"];
    if (check.isObject(gates, path + ".gates")) {
      route.has_gates = true;
      check.onlyKeys(gates, path + ".gates",
                     {"min_samples", "max_mismatch_rate", "min_compared_share", "max_error_rate",
                      "max_latency_ratio", "auto_rollback"});
      if (gates.contains("min_samples")) {
        if (auto n = check.integer(gates["min_samples"], path + ".gates.min_samples", 0,
                                   int64_t{1} << 40))
          route.gates.min_samples = *n;
      }
      const auto rate = [&](const char* key, double high, double& out) {
        if (!gates.contains(key)) return;
        const auto& v = gates[key];
        if (!v.is_number() || v.get<double>() < 0.0 || v.get<double>() > high) {
          check.fail(path + ".gates." + key,
                     describe(v) + " is not a number in 0.." + (high == 1.0 ? "1" : "1000"));
        } else {
          out = v.get<double>();
        }
      };
      rate("max_mismatch_rate", 1.0, route.gates.max_mismatch_rate);
      rate("min_compared_share", 1.0, route.gates.min_compared_share);
      rate("max_error_rate", 1.0, route.gates.max_error_rate);
      rate("max_latency_ratio", 1000.0, route.gates.max_latency_ratio);
      if (gates.contains("auto_rollback")) {
        if (auto b = check.boolean(gates["auto_rollback"], path + ".gates.auto_rollback"))
          route.gates.auto_rollback = *b;
      }
    }
  }
  config.routes.push_back(std::move(route));
}

// Two routes with the same path shape whose methods overlap would make the winner arbitrary.
void checkOverlaps(Checker& check, const ProxyConfig& config) {
  for (size_t i = 0; i < config.routes.size(); ++i) {
    const auto& a = config.routes[i];
    auto pattern_a = PathPattern::parse(a.path);
    if (!pattern_a) continue;
    for (size_t j = 0; j < i; ++j) {
      const auto& b = config.routes[j];
      auto pattern_b = PathPattern::parse(b.path);
      if (!pattern_b || pattern_a->shape() != pattern_b->shape()) continue;
      bool overlap = a.methods.empty() || b.methods.empty();
      for (const auto& method : a.methods) {
        if (std::find(b.methods.begin(), b.methods.end(), method) != b.methods.end())
          overlap = true;
      }
      if (overlap) {
        check.fail("routes[" + std::to_string(i) + "].match",
                   "matches the same paths and methods as routes[" + std::to_string(j) + "] ('" +
                       b.name + "')");
      }
    }
  }
}

std::string shortHash(const std::string& text) {
  uint64_t hash = 1469598103934665603ULL;
  for (const unsigned char c : text) {
    hash ^= c;
    hash *= 1099511628211ULL;
  }
  static const char* kHex = "0123456789abcdef";
  std::string out;
  for (int shift = 60; shift >= 0 && out.size() < 12; shift -= 4)
    out += kHex[(hash >> shift) & 15];
  return out;
}

ProxyConfig build(Checker& check, const json& doc) {
  ProxyConfig config;
  if (!doc.is_object()) {
    check.fail("(root)", "must be a JSON object");
    return config;
  }
  check.onlyKeys(
      doc, "",
      {"listen", "tls", "admin", "debug_headers", "trusted_proxies", "upstreams",
       "default_upstream", "routes", "limits", "cutover", "workers", "access_log", "etcd"});
  if (doc.contains("trusted_proxies")) {
    const auto& list = doc["trusted_proxies"];
    if (!list.is_array()) {
      check.fail("trusted_proxies", "must be an array of addresses or CIDR blocks");
    } else {
      for (size_t i = 0; i < list.size(); ++i) {
        const std::string at = "trusted_proxies[" + std::to_string(i) + "]";
        auto text = check.string(list[i], at);
        if (!text) continue;
        if (auto cidr = Cidr::parse(*text)) {
          config.trusted_proxies.push_back(std::move(*cidr));
        } else {
          check.fail(at, "'" + *text + "' is not an address or a CIDR block (10.0.0.0/8, ::1/128)");
        }
      }
    }
  }
  if (doc.contains("etcd")) {
    if (auto text = check.string(doc["etcd"], "etcd")) {
      if (auto endpoints = common::parseEtcdEndpoints(*text); !endpoints.ok()) {
        check.fail("etcd", endpoints.error().message);
      } else {
        config.etcd = *text;
      }
    }
  }
  if (doc.contains("listen")) {
    if (auto a = check.address(doc["listen"], "listen", true)) config.listen = *a;
  }
  if (doc.contains("tls")) {
    const auto& tls = doc["tls"];
    if (check.isObject(tls, "tls")) {
      check.onlyKeys(tls, "tls", {"listen", "cert_file", "key_file"});
      TlsListenConfig parsed;
      if (tls.contains("listen")) {
        if (auto a = check.address(tls["listen"], "tls.listen", true)) parsed.listen = *a;
      }
      for (const auto& [key, into] :
           {std::pair{"cert_file", &parsed.cert_file}, std::pair{"key_file", &parsed.key_file}}) {
        const std::string path = std::string("tls.") + key;
        if (!tls.contains(key)) {
          check.fail(path, "is required (a PEM file)");
        } else if (auto file = check.string(tls[key], path)) {
          *into = *file;
        }
      }
      config.tls = parsed;
    }
  }
  if (doc.contains("admin")) {
    const auto& admin = doc["admin"];
    if (check.isObject(admin, "admin")) {
      check.onlyKeys(admin, "admin", {"listen", "token_env", "sync_status_url"});
      if (admin.contains("listen")) {
        if (auto a = check.address(admin["listen"], "admin.listen", true)) config.admin.listen = *a;
      }
      if (admin.contains("token_env")) {
        if (auto t = check.string(admin["token_env"], "admin.token_env"))
          config.admin.token_env = *t;
      }
      if (admin.contains("sync_status_url")) {
        if (auto url = check.httpUrl(admin["sync_status_url"], "admin.sync_status_url"))
          config.admin.sync_status_url = *url;
      }
    }
  }
  if (doc.contains("debug_headers")) {
    if (auto b = check.boolean(doc["debug_headers"], "debug_headers")) config.debug_headers = *b;
  }
  if (doc.contains("workers")) {
    if (auto n = check.integer(doc["workers"], "workers", 0, 256))
      config.workers = static_cast<int>(*n);
  }
  if (doc.contains("access_log")) {
    if (auto a = check.string(doc["access_log"], "access_log", false)) config.access_log = *a;
  }
  if (doc.contains("limits")) {
    const auto& limits = doc["limits"];
    if (check.isObject(limits, "limits")) {
      check.onlyKeys(
          limits, "limits",
          {"max_header_bytes", "max_body_bytes", "header_timeout_ms", "idle_timeout_ms",
           "tunnel_idle_timeout_ms", "shadow_queue", "shadow_concurrency", "max_connections"});
      if (limits.contains("max_connections")) {
        if (auto n = check.integer(limits["max_connections"], "limits.max_connections", 1, 1000000))
          config.limits.max_connections = static_cast<int>(*n);
      }
      if (limits.contains("max_header_bytes")) {
        if (auto n =
                check.integer(limits["max_header_bytes"], "limits.max_header_bytes", 1024, 1 << 20))
          config.limits.max_header_bytes = static_cast<int>(*n);
      }
      if (limits.contains("max_body_bytes")) {
        if (auto n = check.integer(limits["max_body_bytes"], "limits.max_body_bytes", 0,
                                   int64_t{1} << 50))
          config.limits.max_body_bytes = *n;
      }
      if (limits.contains("header_timeout_ms")) {
        if (auto n =
                check.integer(limits["header_timeout_ms"], "limits.header_timeout_ms", 1, 3600000))
          config.limits.header_timeout_ms = static_cast<int>(*n);
      }
      if (limits.contains("idle_timeout_ms")) {
        if (auto n =
                check.integer(limits["idle_timeout_ms"], "limits.idle_timeout_ms", 1, 86400000))
          config.limits.idle_timeout_ms = static_cast<int>(*n);
      }
      if (limits.contains("tunnel_idle_timeout_ms")) {
        if (auto n = check.integer(limits["tunnel_idle_timeout_ms"],
                                   "limits.tunnel_idle_timeout_ms", 1, 86400000))
          config.limits.tunnel_idle_timeout_ms = static_cast<int>(*n);
      }
      if (limits.contains("shadow_queue")) {
        if (auto n = check.integer(limits["shadow_queue"], "limits.shadow_queue", 1, 1 << 20))
          config.limits.shadow_queue = static_cast<int>(*n);
      }
      if (limits.contains("shadow_concurrency")) {
        if (auto n =
                check.integer(limits["shadow_concurrency"], "limits.shadow_concurrency", 1, 4096))
          config.limits.shadow_concurrency = static_cast<int>(*n);
      }
    }
  }
  if (doc.contains("cutover")) {
    const auto& cutover = doc["cutover"];
    if (check.isObject(cutover, "cutover")) {
      check.onlyKeys(cutover, "cutover", {"hold_ms"});
      if (cutover.contains("hold_ms")) {
        if (auto n = check.integer(cutover["hold_ms"], "cutover.hold_ms", 1, 60000))
          config.cutover.hold_ms = static_cast<int>(*n);
      }
    }
  }
  if (!doc.contains("upstreams")) {
    check.fail("upstreams", "is required");
  } else if (check.isObject(doc["upstreams"], "upstreams")) {
    for (const auto& [name, value] : doc["upstreams"].items()) {
      readUpstream(check, name, value, "upstreams." + name, config);
    }
  }
  if (!doc.contains("default_upstream")) {
    check.fail("default_upstream", "is required");
  } else if (auto name = check.string(doc["default_upstream"], "default_upstream")) {
    config.default_upstream = *name;
    if (doc.contains("upstreams") && doc["upstreams"].is_object() &&
        !doc["upstreams"].contains(*name)) {
      check.fail("default_upstream", "'" + *name + "' is not a defined upstream");
    }
  }
  if (doc.contains("routes")) {
    const auto& routes = doc["routes"];
    if (!routes.is_array()) {
      check.fail("routes", "must be an array");
    } else {
      std::map<std::string, std::string> names;
      for (size_t i = 0; i < routes.size(); ++i) {
        readRoute(check, routes[i], "routes[" + std::to_string(i) + "]", config, names);
      }
      if (check.errors.empty()) checkOverlaps(check, config);
    }
  }
  return config;
}

}  // namespace

nlohmann::json GatesConfig::toJson() const {
  return {{"min_samples", min_samples},
          {"max_mismatch_rate", max_mismatch_rate},
          {"min_compared_share", min_compared_share},
          {"max_error_rate", max_error_rate},
          {"max_latency_ratio", max_latency_ratio},
          {"auto_rollback", auto_rollback}};
}

std::vector<PlanStep> defaultPlan() {
  return {{Stage::kShadow, 0},
          {Stage::kCanary, 1},
          {Stage::kCanary, 10},
          {Stage::kCanary, 50},
          {Stage::kExtracted, 0}};
}

int stepPercent(const RouteConfig& route) {
  return route.stage == Stage::kCanary ? route.percent : route.stage == Stage::kExtracted ? 100 : 0;
}

std::string describeStep(const PlanStep& step) {
  if (step.stage == Stage::kCanary) return "canary " + std::to_string(step.percent);
  return stageName(step.stage);
}

namespace {
int stepRank(const PlanStep& step) {
  switch (step.stage) {
    case Stage::kMonolith:
      return 0;
    case Stage::kShadow:
      return 1;
    case Stage::kCanary:
      return 100 + step.percent;
    case Stage::kExtracted:
      return 1000;
  }
  return 0;
}
}  // namespace

std::optional<PlanStep> nextStep(const std::vector<PlanStep>& plan, const PlanStep& current) {
  std::optional<PlanStep> best;
  for (const auto& step : plan) {
    if (stepRank(step) > stepRank(current) && (!best || stepRank(step) < stepRank(*best)))
      best = step;
  }
  return best;
}

PlanStep previousStep(const std::vector<PlanStep>& plan, const PlanStep& current) {
  PlanStep best{Stage::kMonolith, 0};
  for (const auto& step : plan) {
    if (stepRank(step) < stepRank(current) && stepRank(step) > stepRank(best)) best = step;
  }
  return best;
}

const char* stageName(Stage stage) {
  switch (stage) {
    case Stage::kMonolith:
      return "monolith";
    case Stage::kShadow:
      return "shadow";
    case Stage::kCanary:
      return "canary";
    case Stage::kExtracted:
      return "extracted";
  }
  return "monolith";
}

std::optional<Stage> parseStage(const std::string& text) {
  if (text == "monolith") return Stage::kMonolith;
  if (text == "shadow") return Stage::kShadow;
  if (text == "canary") return Stage::kCanary;
  if (text == "extracted") return Stage::kExtracted;
  return std::nullopt;
}

std::vector<std::string> ProxyConfig::validate(const nlohmann::json& json) {
  Checker check;
  build(check, json);
  return check.errors;
}

common::Result<ProxyConfig> ProxyConfig::create(const nlohmann::json& json) {
  Checker check;
  ProxyConfig config = build(check, json);
  if (!check.errors.empty()) {
    std::string message;
    for (const auto& error : check.errors)
      message += (message.empty() ? "" : "\n") + error;
    return common::Result<ProxyConfig>::failure("invalid_config", message);
  }
  config.hash = shortHash(json.dump());
  return config;
}

common::Result<ProxyConfig> ProxyConfig::parse(const std::string& text) {
  json doc;
  try {
    doc = json::parse(text);
  } catch (const json::exception& error) {  // parse_error, and out_of_range for 1e999
    return common::Result<ProxyConfig>::failure(
        "invalid_json", std::string("(root): not valid JSON: ") + error.what());
  }
  return create(doc);
}

common::Result<ConfigText> readConfigSource(const std::string& location) {
  using R = common::Result<ConfigText>;
  if (common::isEtcdUrl(location)) {
    auto etcd = common::parseEtcdUrl(location);
    if (!etcd.ok()) return etcd.error();
    common::EtcdClient client(etcd->endpoints);
    const std::string key = etcd->key("config");
    auto found = client.get(key);
    if (!found.ok())
      return R::failure("unreadable",
                        "cannot read " + key + " from etcd: " + found.error().message);
    if (!found->first)
      return R::failure("unreadable", "etcd has no config at " + key +
                                          " (store one with `strangler config push FILE`)");
    return ConfigText{found->first->value, found->first->mod_revision};
  }
  std::ifstream in(location, std::ios::binary);
  if (!in) return R::failure("unreadable", "cannot read config file '" + location + "'");
  std::ostringstream text;
  text << in.rdbuf();
  return ConfigText{text.str(), 0};
}

common::Result<ProxyConfig> ProxyConfig::load(const std::string& path) {
  auto source = readConfigSource(path);
  if (!source.ok()) return source.error();
  return parse(source->text);
}

const RouteConfig* ProxyConfig::findRoute(const std::string& name) const {
  for (const auto& route : routes) {
    if (route.name == name) return &route;
  }
  return nullptr;
}

nlohmann::json ProxyConfig::toJson() const {
  json doc;
  doc["listen"] = listen.toString();
  if (tls) {
    doc["tls"] = {{"listen", tls->listen.toString()},
                  {"cert_file", tls->cert_file},
                  {"key_file", tls->key_file}};
  }
  doc["admin"] = {{"listen", admin.listen.toString()}};
  if (!admin.token_env.empty()) doc["admin"]["token_env"] = admin.token_env;
  if (!admin.sync_status_url.empty()) doc["admin"]["sync_status_url"] = admin.sync_status_url;
  doc["debug_headers"] = debug_headers;
  if (!trusted_proxies.empty()) {
    doc["trusted_proxies"] = json::array();
    for (const auto& cidr : trusted_proxies)
      doc["trusted_proxies"].push_back(cidr.text);
  }
  doc["upstreams"] = json::object();
  for (const auto& [name, upstream] : upstreams) {
    json u;
    if (!upstream.discovery_prefix.empty()) {
      u["discovery"] = {{"etcd_prefix", upstream.discovery_prefix}};
    } else {
      u["endpoints"] = json::array();
      for (const auto& endpoint : upstream.endpoints)
        u["endpoints"].push_back(endpoint.toString());
    }
    u["timeout_ms"] = upstream.timeout_ms;
    u["connect_timeout_ms"] = upstream.connect_timeout_ms;
    u["eject_ms"] = upstream.eject_ms;
    u["resolve_ms"] = upstream.resolve_ms;
    u["max_idle_connections"] = upstream.max_idle_connections;
    if (upstream.h2) u["protocol"] = "h2";
    if (upstream.tls) {
      json upstream_tls = json::object();
      if (!upstream.tls->ca_file.empty()) upstream_tls["ca_file"] = upstream.tls->ca_file;
      if (!upstream.tls->server_name.empty())
        upstream_tls["server_name"] = upstream.tls->server_name;
      if (upstream.tls->insecure) upstream_tls["insecure"] = true;
      u["tls"] = upstream_tls;
    }
    if (upstream.circuit_breaker) {
      u["circuit_breaker"] = {
          {"consecutive_failures", upstream.circuit_breaker->consecutive_failures},
          {"open_ms", upstream.circuit_breaker->open_ms}};
    }
    doc["upstreams"][name] = u;
  }
  doc["default_upstream"] = default_upstream;
  doc["routes"] = json::array();
  for (const auto& route : routes) {
    json r;
    r["name"] = route.name;
    r["match"] = {{"path", route.path}};
    if (!route.methods.empty()) r["match"]["methods"] = route.methods;
    if (!route.target.empty()) r["target"] = route.target;
    r["stage"] = stageName(route.stage);
    if (route.stage == Stage::kCanary || route.percent != 0) r["percent"] = route.percent;
    if (route.sticky) {
      r["sticky"] = route.sticky->header.empty() ? json{{"cookie", route.sticky->cookie}}
                                                 : json{{"header", route.sticky->header}};
    }
    if (route.fallback) r["fallback"] = true;
    if (route.rewrite)
      r["rewrite"] = {{"prefix", route.rewrite->prefix}, {"to", route.rewrite->to}};
    if (!route.cohort.empty()) r["cohort"] = route.cohort;
    if (route.max_body_bytes) r["max_body_bytes"] = *route.max_body_bytes;
    if (!route.data.empty()) r["data"] = route.data;
    if (route.shadow) {
      r["shadow"] = {{"ignore", route.shadow->ignore},
                     {"sample", route.shadow->sample},
                     {"unsafe_methods", route.shadow->unsafe_methods}};
      if (!route.shadow->acl.empty()) r["shadow"]["acl"] = route.shadow->acl;
      if (route.shadow->noise_filter) r["shadow"]["noise_filter"] = true;
      if (route.shadow->max_body_bytes != kDefaultKeptBodyBytes)
        r["shadow"]["max_body_bytes"] = route.shadow->max_body_bytes;
      if (route.shadow->max_inflight > 0) r["shadow"]["max_inflight"] = route.shadow->max_inflight;
      if (route.shadow->max_rate > 0) r["shadow"]["max_rate"] = route.shadow->max_rate;
      if (route.shadow->headers != std::vector<std::string>{"Content-Type"})
        r["shadow"]["headers"] = route.shadow->headers;
    }
    if (!route.plan.empty()) {
      r["plan"] = json::array();
      for (const auto& step : route.plan) {
        if (step.stage == Stage::kCanary) {
          r["plan"].push_back(step.percent);
        } else {
          r["plan"].push_back(stageName(step.stage));
        }
      }
    }
    if (route.has_gates) {
      r["gates"] = route.gates.toJson();
    }
    doc["routes"].push_back(r);
  }
  doc["limits"] = {{"max_header_bytes", limits.max_header_bytes},
                   {"max_body_bytes", limits.max_body_bytes},
                   {"header_timeout_ms", limits.header_timeout_ms},
                   {"idle_timeout_ms", limits.idle_timeout_ms},
                   {"tunnel_idle_timeout_ms", limits.tunnel_idle_timeout_ms},
                   {"shadow_queue", limits.shadow_queue},
                   {"shadow_concurrency", limits.shadow_concurrency},
                   {"max_connections", limits.max_connections}};
  doc["cutover"] = {{"hold_ms", cutover.hold_ms}};
  if (workers != 0) doc["workers"] = workers;
  if (!access_log.empty()) doc["access_log"] = access_log;
  if (!etcd.empty()) doc["etcd"] = etcd;
  return doc;
}

}  // namespace strangler::proxy
