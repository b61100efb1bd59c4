// The generated nginx.conf and Envoy bootstrap, checked as text and as JSON.
#include "config_export.h"

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>
#include <regex>

#include "strangler/proxy/router.h"

namespace strangler::cli {
namespace {

using nlohmann::json;

proxy::ProxyConfig load(const std::string& text) {
  auto config = proxy::ProxyConfig::parse(text);
  EXPECT_TRUE(config.ok()) << (config.ok() ? "" : config.error().message);
  return std::move(config.value());
}

const char* kConfig = R"({
  "listen": "127.0.0.1:8080",
  "admin": {"listen": "127.0.0.1:9901"},
  "debug_headers": true,
  "upstreams": {
    "monolith": {"endpoints": ["127.0.0.1:8081"], "timeout_ms": 2000},
    "driver-service": {"endpoints": ["127.0.0.1:8082", "127.0.0.1:8083"], "timeout_ms": 1000,
                       "connect_timeout_ms": 250,
                       "circuit_breaker": {"consecutive_failures": 5, "open_ms": 10000}}
  },
  "default_upstream": "monolith",
  "routes": [
    {"name": "drivers", "match": {"path": "/api/drivers/**", "methods": ["GET", "PUT"]},
     "target": "driver-service", "stage": "canary", "percent": 25,
     "sticky": {"header": "X-User-Id"}, "fallback": true},
    {"name": "trips", "match": {"path": "/api/trips"}, "stage": "monolith"},
    {"name": "location", "match": {"path": "/api/drivers/{id}/location"},
     "target": "driver-service", "stage": "extracted", "fallback": true,
     "rewrite": {"prefix": "/api/drivers", "to": "/v2/drivers"}},
    {"name": "any-location", "match": {"path": "/api/{kind}/{id}/location"},
     "target": "driver-service", "stage": "shadow"},
    {"name": "me", "match": {"path": "/api/drivers/me/location"}, "stage": "monolith"},
    {"name": "cookie-canary", "match": {"path": "/api/ratings/**"}, "target": "driver-service",
     "stage": "canary", "percent": 10, "sticky": {"cookie": "session"}, "cohort": "riders"}
  ]
})";

std::vector<std::string> namesInOrder(const proxy::ProxyConfig& config) {
  std::vector<std::string> names;
  for (const size_t i : routesBySpecificity(config))
    names.push_back(config.routes[i].name);
  return names;
}

TEST(ConfigExportTest, OrdersRoutesAsTheRouteTablePrefersThem) {
  const auto config = load(kConfig);
  EXPECT_EQ(namesInOrder(config),
            (std::vector<std::string>{"trips", "me", "location", "any-location", "drivers",
                                      "cookie-canary"}));
}

TEST(ConfigExportTest, FirstMatchInSpecificityOrderIsTheRoutersChoice) {
  // A first-match proxy trying the routes in this order, skipping routes whose method or path
  // does not fit, must pick the route strangler-proxy's Router picks.
  const auto config = load(kConfig);
  const proxy::Router router(config);
  const auto order = routesBySpecificity(config);
  for (const std::string path :
       {"/api/trips", "/api/trips/", "/api/drivers/7/location", "/api/drivers/me/location",
        "/api/riders/7/location", "/api/drivers/7", "/api/drivers", "/api/ratings/1", "/x"}) {
    for (const std::string method : {"GET", "POST", "PUT", "DELETE"}) {
      SCOPED_TRACE(method + " " + path);
      int first = -1;
      for (const size_t i : order) {
        const auto& route = config.routes[i];
        const bool method_ok =
            route.methods.empty() ||
            std::find(route.methods.begin(), route.methods.end(), method) != route.methods.end();
        if (method_ok && std::regex_match(path, std::regex(pathRegex(route.path)))) {
          first = static_cast<int>(i);
          break;
        }
      }
      const auto decision = router.decide(proxy::RequestView{method, path, nullptr}, 0);
      EXPECT_EQ(first, decision.route_index);
    }
  }
}

TEST(ConfigExportTest, PathRegexesFollowTheMatcher) {
  EXPECT_EQ(pathRegex("/api/trips"), "^/api/trips/?$");
  EXPECT_EQ(pathRegex("/api/drivers/{id}/location"), "^/api/drivers/[^/]+/location/?$");
  EXPECT_EQ(pathRegex("/api/drivers/**"), "^/api/drivers(/.*)?$");
  EXPECT_EQ(pathRegex("/**"), "^/.*$");
  EXPECT_EQ(pathRegex("/"), "^/$");
  EXPECT_EQ(pathRegex("/v1.0/x"), "^/v1\\.0/x/?$");
}

TEST(ConfigExportTest, NginxHasUpstreamsLocationsSplitAndFallback) {
  const auto exported = exportNginx(load(kConfig), "strangler.json");
  const std::string& conf = exported.text;
  // Upstreams with keep-alive and the breaker as passive health checks.
  EXPECT_NE(conf.find("upstream driver-service {\n        server 127.0.0.1:8082 max_fails=5 "
                      "fail_timeout=10s;\n        server 127.0.0.1:8083 max_fails=5 "
                      "fail_timeout=10s;\n        keepalive 128;"),
            std::string::npos)
      << conf;
  EXPECT_NE(conf.find("listen 127.0.0.1:8080;"), std::string::npos);
  EXPECT_NE(conf.find("listen 127.0.0.1:9901;"), std::string::npos);
  // Exact path, its trailing-slash twin, the subtree root and prefix.
  EXPECT_NE(conf.find("location = \"/api/trips\" {"), std::string::npos);
  EXPECT_NE(conf.find("location = \"/api/trips/\" {"), std::string::npos);
  EXPECT_NE(conf.find("location = \"/api/drivers\" {"), std::string::npos);
  EXPECT_NE(conf.find("location \"/api/drivers/\" {"), std::string::npos);
  EXPECT_NE(conf.find("location = \"/api/drivers/me/location\" {"), std::string::npos);
  // Regexes in specificity order: the literal 'drivers' template before the '{kind}' one.
  const auto specific = conf.find("location ~ \"^/api/drivers/[^/]+/location/?$\"");
  const auto general = conf.find("location ~ \"^/api/[^/]+/[^/]+/location/?$\"");
  ASSERT_NE(specific, std::string::npos);
  ASSERT_NE(general, std::string::npos);
  EXPECT_LT(specific, general);
  // Canary: split by the sticky header (or a request id), per cohort seed for cookies.
  EXPECT_NE(conf.find("map $http_x_user_id $strangler_key_r0_drivers {\n        \"\" "
                      "$request_id;\n        default $http_x_user_id;"),
            std::string::npos);
  EXPECT_NE(conf.find("split_clients \"drivers:$strangler_key_r0_drivers\" "
                      "$strangler_canary_r0_drivers {\n        25% 1;\n        * 0;"),
            std::string::npos);
  EXPECT_NE(conf.find("map $cookie_session $strangler_key_r5_cookie_canary"), std::string::npos);
  EXPECT_NE(conf.find("split_clients \"riders:$strangler_key_r5_cookie_canary\""),
            std::string::npos);
  EXPECT_NE(conf.find("MurmurHash2"), std::string::npos);
  // Methods the route does not take jump to the route strangler-proxy would pick.
  EXPECT_NE(conf.find("if ($request_method !~ \"^(GET|PUT)$\") { return 471; }"),
            std::string::npos);
  EXPECT_NE(conf.find("\"~^(GET|PUT) /api/drivers(/.*)?$\" @strangler_r0_drivers;"),
            std::string::npos);
  // Extracted with rewrite and fallback for idempotent methods.
  EXPECT_NE(conf.find("rewrite \"^/api/drivers(/.*)?$\" \"/v2/drivers$1\" break;"),
            std::string::npos);
  EXPECT_NE(conf.find("error_page 500 502 503 504 = @strangler_r2_location_fallback;"),
            std::string::npos);
  EXPECT_NE(conf.find("proxy_pass http://monolith$request_uri;"), std::string::npos);
  // Shadow: mirrored, with a note that nothing is compared.
  EXPECT_NE(conf.find("mirror /_strangler/shadow/r3_any_location;"), std::string::npos);
  EXPECT_NE(conf.find("nginx only mirrors"), std::string::npos);
  EXPECT_NE(conf.find("proxy_set_header X-Strangler-Shadow 1;"), std::string::npos);
  // Debug headers and timeouts.
  EXPECT_NE(conf.find("add_header X-Strangler-Route \"trips\" always;"), std::string::npos);
  EXPECT_NE(conf.find("proxy_connect_timeout 250ms;"), std::string::npos);
  // Balanced braces: a truncated or mis-nested file would not load.
  EXPECT_EQ(std::count(conf.begin(), conf.end(), '{'), std::count(conf.begin(), conf.end(), '}'));
}

TEST(ConfigExportTest, NginxQuotesWhatItCannotTakeLiterally) {
  const auto exported = exportNginx(load(R"({
    "listen": "127.0.0.1:0",
    "upstreams": {"m": {"endpoints": ["127.0.0.1:1"]}, "t": {"endpoints": ["127.0.0.1:2"]}},
    "default_upstream": "m", "debug_headers": true,
    "routes": [{"name": "cost$", "match": {"path": "/a$b/{id}"}, "target": "t",
                "stage": "extracted", "rewrite": {"prefix": "/a$b", "to": "/c$d"}}]})"),
                                    "x.json");
  EXPECT_NE(exported.text.find("location ~ \"^/a\\\\$b/[^/]+/?$\""), std::string::npos)
      << exported.text;
  EXPECT_NE(exported.text.find("\"/c${strangler_dollar}d$1\""), std::string::npos);
  EXPECT_NE(exported.text.find("geo $strangler_dollar { default \"$\"; }"), std::string::npos);
  ASSERT_EQ(exported.notes.size(), 1u);  // port 0
  EXPECT_NE(exported.notes[0].find("port 0"), std::string::npos);
}

TEST(ConfigExportTest, EnvoyBootstrapHasListenerClustersAndRoutesInOrder) {
  const auto exported = exportEnvoy(load(kConfig), "strangler.json");
  const json bootstrap = json::parse(exported.text);
  EXPECT_EQ(bootstrap["admin"]["address"]["socket_address"]["port_value"], 9901);
  EXPECT_EQ(bootstrap["node"]["metadata"]["source"], "strangler.json");
  EXPECT_EQ(bootstrap["node"]["metadata"]["notes"].size(), exported.notes.size());
  // Only fields of Envoy's Bootstrap message at the top level (Envoy rejects unknown ones).
  for (const auto& [key, value] : bootstrap.items()) {
    (void)value;
    EXPECT_TRUE(key == "node" || key == "admin" || key == "static_resources") << key;
  }
  const auto& listener = bootstrap["static_resources"]["listeners"][0];
  EXPECT_EQ(listener["address"]["socket_address"]["address"], "127.0.0.1");
  EXPECT_EQ(listener["address"]["socket_address"]["port_value"], 8080);
  const auto& hcm = listener["filter_chains"][0]["filters"][0];
  EXPECT_EQ(hcm["name"], "envoy.filters.network.http_connection_manager");
  const auto& vhost = hcm["typed_config"]["route_config"]["virtual_hosts"][0];
  EXPECT_EQ(hcm["typed_config"]["http_filters"][0]["name"], "envoy.filters.http.router");

  // Clusters: endpoints, connect timeout, outlier detection from the breaker.
  std::map<std::string, json> clusters;
  for (const auto& c : bootstrap["static_resources"]["clusters"])
    clusters[c["name"]] = c;
  ASSERT_EQ(clusters.size(), 2u);
  const auto& svc = clusters["driver-service"];
  EXPECT_EQ(svc["type"], "STATIC");
  EXPECT_EQ(svc["connect_timeout"], "0.250s");
  EXPECT_EQ(svc["load_assignment"]["endpoints"][0]["lb_endpoints"].size(), 2u);
  EXPECT_EQ(svc["outlier_detection"]["consecutive_5xx"], 5);
  EXPECT_EQ(svc["outlier_detection"]["base_ejection_time"], "10.000s");
  EXPECT_FALSE(clusters["monolith"].contains("outlier_detection"));

  // Routes: one entry per route part, most specific first, the default last.
  std::vector<std::string> names;
  for (const auto& r : vhost["routes"])
    names.push_back(r["name"]);
  EXPECT_EQ(names, (std::vector<std::string>{"trips", "trips", "me", "me", "location", "location",
                                             "any-location", "any-location", "drivers",
                                             "cookie-canary", "(no route)"}));
  const auto& routes = vhost["routes"];
  EXPECT_EQ(routes[0]["match"]["path"], "/api/trips");
  EXPECT_EQ(routes[1]["match"]["path"], "/api/trips/");
  EXPECT_EQ(routes.back()["match"]["prefix"], "/");
  EXPECT_EQ(routes.back()["route"]["cluster"], "monolith");

  // Extracted with fallback: idempotent methods get retries, the rest does not.
  const auto& location_safe = routes[4];
  EXPECT_EQ(location_safe["match"]["safe_regex"]["regex"], "^/api/drivers/[^/]+/location/?$");
  EXPECT_EQ(location_safe["match"]["headers"][0]["name"], ":method");
  EXPECT_TRUE(location_safe["route"].contains("retry_policy"));
  EXPECT_EQ(location_safe["route"]["regex_rewrite"]["pattern"]["regex"], "^/api/drivers(/.*)?$");
  EXPECT_EQ(location_safe["route"]["regex_rewrite"]["substitution"], "/v2/drivers\\1");
  EXPECT_FALSE(routes[5]["route"].contains("retry_policy"));

  // Shadow: mirrored for idempotent methods only.
  EXPECT_EQ(routes[6]["route"]["cluster"], "monolith");
  EXPECT_EQ(routes[6]["route"]["request_mirror_policies"][0]["cluster"], "driver-service");
  EXPECT_FALSE(routes[7]["route"].contains("request_mirror_policies"));

  // Canary: weighted clusters adding up to 100, method-restricted, with a stickiness note.
  const auto& drivers = routes[8];
  EXPECT_EQ(drivers["match"]["path_separated_prefix"], "/api/drivers");
  EXPECT_EQ(drivers["match"]["headers"][0]["string_match"]["safe_regex"]["regex"], "^(GET|PUT)$");
  int total = 0;
  for (const auto& c : drivers["route"]["weighted_clusters"]["clusters"])
    total += c["weight"].get<int>();
  EXPECT_EQ(total, 100);
  EXPECT_EQ(drivers["route"]["weighted_clusters"]["clusters"][0]["name"], "driver-service");
  EXPECT_EQ(drivers["route"]["weighted_clusters"]["clusters"][0]["weight"], 25);
  const auto& notes = drivers["metadata"]["filter_metadata"]["strangler"]["notes"];
  ASSERT_EQ(notes.size(), 1u);
  EXPECT_NE(notes[0].get<std::string>().find("not sticky"), std::string::npos);
  EXPECT_EQ(drivers["response_headers_to_add"][1]["header"]["value"], "%UPSTREAM_CLUSTER%");
}

TEST(ConfigExportTest, EnvoyCanaryWithRewriteSplitsIntoTwoEntries) {
  const auto exported = exportEnvoy(load(R"({
    "upstreams": {"m": {"endpoints": ["127.0.0.1:1"]}, "t": {"endpoints": ["localhost:2"]}},
    "default_upstream": "m",
    "routes": [{"name": "c", "match": {"path": "/a/**"}, "target": "t", "stage": "canary",
                "percent": 40, "rewrite": {"prefix": "/a", "to": "/b/"}}]})"),
                                    "x.json");
  const json bootstrap = json::parse(exported.text);
  const auto& routes = bootstrap["static_resources"]["listeners"][0]["filter_chains"][0]["filters"]
                                [0]["typed_config"]["route_config"]["virtual_hosts"][0]["routes"];
  ASSERT_EQ(routes.size(), 3u);
  EXPECT_EQ(routes[0]["match"]["runtime_fraction"]["default_value"]["numerator"], 40);
  EXPECT_EQ(routes[0]["route"]["cluster"], "t");
  EXPECT_EQ(routes[0]["route"]["regex_rewrite"]["pattern"]["regex"], "^/a(?:/(.*))?$");
  EXPECT_EQ(routes[1]["route"]["cluster"], "m");
  EXPECT_FALSE(routes[1]["route"].contains("regex_rewrite"));
  for (const auto& c : bootstrap["static_resources"]["clusters"]) {
    if (c["name"] == "t") {
      EXPECT_EQ(c["type"], "STRICT_DNS");
    }
  }
}

}  // namespace
}  // namespace strangler::cli
