// The generated nginx.conf and Envoy bootstrap, checked as text and as JSON.
#include "config_export.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <map>
#include <nlohmann/json.hpp>
#include <regex>
#include <set>

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

TEST(ConfigExportTest, EnvoyHasTheHttpsListenerAndVerifiedUpstreamTls) {
  const json bootstrap = json::parse(exportEnvoy(load(R"({
    "listen": "127.0.0.1:8080",
    "tls": {"listen": "127.0.0.1:8443", "cert_file": "cert.pem", "key_file": "key.pem"},
    "upstreams": {
      "monolith": {"endpoints": ["127.0.0.1:9000"]},
      "secure": {"endpoints": ["10.0.0.5:443"],
                 "tls": {"ca_file": "ca.pem", "server_name": "svc.internal"}},
      "lax": {"endpoints": ["10.0.0.6:443"], "tls": {"insecure": true}}},
    "default_upstream": "monolith",
    "routes": []})"),
                                                 "strangler.json")
                                         .text);
  const auto& listeners = bootstrap["static_resources"]["listeners"];
  ASSERT_EQ(listeners.size(), 2u);
  const auto& https = listeners[1];
  EXPECT_EQ(https["address"]["socket_address"]["port_value"], 8443);
  const auto& chain = https["filter_chains"][0];
  EXPECT_EQ(chain["filters"][0]["name"], "envoy.filters.network.http_connection_manager");
  const auto& context = chain["transport_socket"]["typed_config"]["common_tls_context"];
  EXPECT_EQ(context["alpn_protocols"], json({"h2", "http/1.1"}));
  EXPECT_EQ(context["tls_certificates"][0]["certificate_chain"]["filename"], "cert.pem");
  EXPECT_EQ(context["tls_certificates"][0]["private_key"]["filename"], "key.pem");
  EXPECT_EQ(context["tls_params"]["tls_minimum_protocol_version"], "TLSv1_2");
  std::map<std::string, json> clusters;
  for (const auto& c : bootstrap["static_resources"]["clusters"])
    clusters[c["name"]] = c;
  const auto& secure = clusters["secure"]["transport_socket"]["typed_config"];
  EXPECT_EQ(secure["sni"], "svc.internal");
  const auto& validation = secure["common_tls_context"]["validation_context"];
  EXPECT_EQ(validation["trusted_ca"]["filename"], "ca.pem");
  EXPECT_EQ(validation["match_typed_subject_alt_names"][0]["matcher"]["exact"], "svc.internal");
  // insecure: TLS without a validation context; plain upstreams: no transport socket.
  EXPECT_FALSE(clusters["lax"]["transport_socket"]["typed_config"].contains("common_tls_context"));
  EXPECT_FALSE(clusters["monolith"].contains("transport_socket"));
}

// "protocol": "h2" upstreams (gRPC): nginx reaches them with grpc_pass (its only way to speak
// HTTP/2 to an upstream), with grpc_* timeouts, headers and TLS; Envoy with HTTP/2 options and
// ALPN h2. What nginx cannot express is said, not dropped.
const char* kGrpcConfig = R"({
  "listen": "127.0.0.1:8080",
  "upstreams": {
    "monolith": {"endpoints": ["127.0.0.1:8081"]},
    "echo": {"endpoints": ["127.0.0.1:50051"], "protocol": "h2", "timeout_ms": 1500},
    "secure": {"endpoints": ["10.0.0.5:443"], "protocol": "h2",
               "tls": {"ca_file": "ca.pem", "server_name": "svc.internal"}}},
  "default_upstream": "monolith",
  "routes": [
    {"name": "echo", "match": {"path": "/echo.Echo/**"}, "target": "echo", "stage": "extracted"},
    {"name": "secure", "match": {"path": "/secure.Svc/**"}, "target": "secure",
     "stage": "canary", "percent": 10},
    {"name": "mirror", "match": {"path": "/mirror.Svc/**"}, "target": "echo", "stage": "shadow"}
  ]})";

TEST(ConfigExportTest, NginxReachesHttp2UpstreamsWithGrpcPass) {
  const auto exported = exportNginx(load(kGrpcConfig), "strangler.json");
  const std::string& conf = exported.text;
  EXPECT_NE(conf.find("grpc_pass grpc://echo;"), std::string::npos) << conf;
  EXPECT_NE(conf.find("grpc_read_timeout 1500ms;"), std::string::npos) << conf;
  EXPECT_NE(conf.find("grpc_pass grpcs://secure;"), std::string::npos) << conf;
  EXPECT_NE(conf.find("grpc_ssl_verify on;"), std::string::npos) << conf;
  EXPECT_NE(conf.find("grpc_ssl_name \"svc.internal\";"), std::string::npos) << conf;
  EXPECT_NE(conf.find("grpc_set_header X-Forwarded-For $proxy_add_x_forwarded_for;"),
            std::string::npos)
      << conf;
  // Never proxy_pass (HTTP/1.1) to an HTTP/2 upstream; the monolith keeps proxy_pass.
  EXPECT_EQ(conf.find("proxy_pass http://echo"), std::string::npos) << conf;
  EXPECT_EQ(conf.find("proxy_pass https://secure"), std::string::npos) << conf;
  EXPECT_NE(conf.find("proxy_pass http://monolith"), std::string::npos) << conf;
  // Said, not dropped: no HTTP/2 listener for gRPC clients without "tls", no shadow copies.
  const auto said = [&](const std::string& text) {
    return std::any_of(exported.notes.begin(), exported.notes.end(), [&](const std::string& note) {
      return note.find(text) != std::string::npos;
    });
  };
  EXPECT_TRUE(said("gRPC clients need HTTP/2")) << conf;
  EXPECT_TRUE(said("shadow copies of route 'mirror'")) << conf;
}

TEST(ConfigExportTest, EnvoySpeaksHttp2ToHttp2Upstreams) {
  const json bootstrap = json::parse(exportEnvoy(load(kGrpcConfig), "strangler.json").text);
  std::map<std::string, json> clusters;
  for (const auto& c : bootstrap["static_resources"]["clusters"])
    clusters[c["name"]] = c;
  const std::string key = "envoy.extensions.upstreams.http.v3.HttpProtocolOptions";
  for (const char* name : {"echo", "secure"}) {
    const auto& options = clusters[name]["typed_extension_protocol_options"][key];
    EXPECT_TRUE(options["explicit_http_config"].contains("http2_protocol_options")) << name;
  }
  EXPECT_FALSE(clusters["monolith"].contains("typed_extension_protocol_options"));
  EXPECT_EQ(clusters["secure"]["transport_socket"]["typed_config"]["common_tls_context"]
                    ["alpn_protocols"],
            json({"h2"}));
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

// Routes that carry data, beside routes that don't: writes follow ownership.
const char* kDataConfig = R"({
  "listen": "127.0.0.1:8080",
  "admin": {"listen": "127.0.0.1:9901"},
  "upstreams": {
    "monolith": {"endpoints": ["127.0.0.1:8081"]},
    "svc": {"endpoints": ["127.0.0.1:8082"]}
  },
  "default_upstream": "monolith",
  "routes": [
    {"name": "vehicles", "match": {"path": "/api/vehicles/**"}, "target": "svc",
     "stage": "canary", "percent": 40, "sticky": {"header": "X-User-Id"}, "data": "vehicles"},
    {"name": "photos", "match": {"path": "/api/vehicles/{id}/photos", "methods": ["GET", "PUT"]},
     "target": "svc", "stage": "canary", "percent": 20, "fallback": true, "data": "vehicles",
     "rewrite": {"prefix": "/api/vehicles", "to": "/v2/vehicles"}},
    {"name": "licenses", "match": {"path": "/api/licenses/**"}, "target": "svc",
     "stage": "shadow", "shadow": {"unsafe_methods": true}, "data": "licenses"},
    {"name": "ratings", "match": {"path": "/api/ratings/{id}"}, "target": "svc",
     "stage": "extracted", "fallback": true, "data": "ratings"},
    {"name": "tolls", "match": {"path": "/api/tolls", "methods": ["GET", "PUT", "POST"]},
     "target": "svc", "stage": "extracted", "fallback": true},
    {"name": "zones", "match": {"path": "/api/zones/**"}, "target": "svc", "stage": "canary",
     "percent": 30},
    {"name": "fares", "match": {"path": "/api/fares/**"}, "target": "svc", "stage": "shadow",
     "shadow": {"unsafe_methods": true}}
  ]
})";

// The line after the one holding `pos`, without its indentation.
std::string lineAfter(const std::string& text, size_t pos) {
  const size_t start = text.find_first_not_of(' ', text.find('\n', pos) + 1);
  return text.substr(start, text.find('\n', start) - start);
}

TEST(ConfigExportTest, NginxDataRoutesSplitCopyAndRetryOnlySafeMethods) {
  const auto exported = exportNginx(load(kDataConfig), "strangler.json");
  const std::string& conf = exported.text;
  EXPECT_NE(conf.find("map $request_method $strangler_safe {\n        GET 1;\n        HEAD 1;\n"
                      "        OPTIONS 1;\n        default 0;\n    }"),
            std::string::npos)
      << conf;
  // Canary with data: the split only counts for safe methods; the rest stays on the monolith.
  EXPECT_NE(conf.find("split_clients \"vehicles:$strangler_key_r0_vehicles\" "
                      "$strangler_split_r0_vehicles {\n        40% 1;"),
            std::string::npos);
  EXPECT_NE(conf.find("map \"$strangler_safe:$strangler_split_r0_vehicles\" "
                      "$strangler_canary_r0_vehicles {\n        \"1:1\" 1;\n        default 0;"),
            std::string::npos);
  EXPECT_NE(conf.find("map \"$strangler_safe:$strangler_split_r1_photos\" "
                      "$strangler_canary_r1_photos {"),
            std::string::npos);
  EXPECT_NE(conf.find("if ($strangler_canary_r0_vehicles) { return 472; }"), std::string::npos);
  // Without data the canary splits every method as before.
  EXPECT_NE(conf.find("split_clients \"zones:$request_id\" $strangler_canary_r5_zones {"),
            std::string::npos);
  EXPECT_EQ(conf.find("$strangler_split_r5_zones"), std::string::npos);
  // Shadow with data: unsafe methods are never copied, even with unsafe_methods.
  const auto licenses = conf.find("location = /_strangler/shadow/r2_licenses {");
  const auto fares = conf.find("location = /_strangler/shadow/r6_fares {");
  ASSERT_NE(licenses, std::string::npos);
  ASSERT_NE(fares, std::string::npos);
  // A location's block: up to the next location (or the end).
  auto block = [&](size_t start) {
    return conf.substr(start, conf.find("location", start + 1) - start);
  };
  const std::string licenses_block = block(licenses);
  const std::string fares_block = block(fares);
  EXPECT_NE(licenses_block.find("if ($strangler_safe = 0) { return 204; }"), std::string::npos)
      << licenses_block;
  EXPECT_EQ(fares_block.find("return 204;"), std::string::npos) << fares_block;  // copies all
  // Fallback with data: safe methods only; without data: idempotent ones.
  const auto ratings = conf.find("error_page 473 = @strangler_r3_ratings_try;");
  ASSERT_NE(ratings, std::string::npos);
  EXPECT_EQ(lineAfter(conf, ratings), "if ($strangler_safe) { return 473; }");
  const auto tolls = conf.find("error_page 473 = @strangler_r4_tolls_try;");
  ASSERT_NE(tolls, std::string::npos);
  EXPECT_EQ(lineAfter(conf, tolls), "if ($strangler_idempotent) { return 473; }");
  EXPECT_NE(conf.find("\"ratings\" falls back to monolith for safe methods"), std::string::npos);
  // One note per data route (the fenced cutover is strangler-proxy's), in the file and returned.
  ASSERT_EQ(exported.notes.size(), 4u);
  for (const auto& note : exported.notes) {
    EXPECT_NE(note.find("carries data"), std::string::npos) << note;
    EXPECT_NE(note.find("fenced cutover"), std::string::npos) << note;
    EXPECT_NE(conf.find("# note: " + note), std::string::npos) << note;
  }
  EXPECT_EQ(std::count(conf.begin(), conf.end(), '{'), std::count(conf.begin(), conf.end(), '}'));
}

TEST(ConfigExportTest, NginxShadowCopiesSafeMethodsOnlyAndNeedsNoSafeMapOtherwise) {
  // A shadow route without unsafe_methods copies safe methods only (a copied PUT or DELETE
  // writes): the safe map, and the shadow location answering the others itself.
  const auto exported = exportNginx(load(kConfig), "strangler.json");
  EXPECT_NE(exported.text.find("map $request_method $strangler_safe"), std::string::npos);
  EXPECT_NE(exported.text.find("if ($strangler_safe = 0) { return 204; }"), std::string::npos)
      << exported.text;
  EXPECT_EQ(exported.text.find("$strangler_split_"), std::string::npos);
  // Without data routes and shadows, no safe map at all.
  auto config = nlohmann::json::parse(kConfig);
  auto& routes = config["routes"];
  routes.erase(std::remove_if(routes.begin(), routes.end(),
                              [](const nlohmann::json& r) { return r["stage"] == "shadow"; }),
               routes.end());
  const auto plain = exportNginx(load(config.dump()), "strangler.json");
  EXPECT_EQ(plain.text.find("$strangler_safe"), std::string::npos);
}

// Where a request goes through an Envoy route list, read as Envoy reads it: the first entry
// whose path and :method match; an entry with a runtime_fraction matches only sometimes, so the
// entries after it can serve the request too.
struct EnvoyOutcome {
  std::set<std::string> clusters;
  std::set<std::string> mirrors;
  bool retries = false;
  std::set<std::string> names;
};

bool envoyPathMatches(const json& match, const std::string& path) {
  if (match.contains("path")) return path == match["path"].get<std::string>();
  if (match.contains("prefix")) return path.rfind(match["prefix"].get<std::string>(), 0) == 0;
  if (match.contains("path_separated_prefix")) {
    const auto prefix = match["path_separated_prefix"].get<std::string>();
    return path == prefix || path.rfind(prefix + "/", 0) == 0;
  }
  return std::regex_match(path, std::regex(match["safe_regex"]["regex"].get<std::string>()));
}

EnvoyOutcome envoyRoute(const json& routes, const std::string& method, const std::string& path) {
  EnvoyOutcome outcome;
  for (const auto& entry : routes) {
    const auto& match = entry["match"];
    if (!envoyPathMatches(match, path)) continue;
    if (match.contains("headers")) {
      const auto& header = match["headers"][0];
      EXPECT_EQ(header["name"], ":method");
      if (!std::regex_match(
              method, std::regex(header["string_match"]["safe_regex"]["regex"].get<std::string>())))
        continue;
    }
    const auto& route = entry["route"];
    const auto name = entry["name"].get<std::string>();
    outcome.names.insert(name.substr(0, name.find(" (canary ")));
    if (route.contains("weighted_clusters")) {
      for (const auto& c : route["weighted_clusters"]["clusters"]) {
        if (c["weight"].get<int>() > 0) outcome.clusters.insert(c["name"].get<std::string>());
      }
    } else {
      outcome.clusters.insert(route["cluster"].get<std::string>());
    }
    if (route.contains("request_mirror_policies")) {
      for (const auto& mirror : route["request_mirror_policies"])
        outcome.mirrors.insert(mirror["cluster"].get<std::string>());
    }
    outcome.retries = outcome.retries || route.contains("retry_policy");
    if (!match.contains("runtime_fraction")) break;
  }
  return outcome;
}

TEST(ConfigExportTest, EnvoyRoutesEveryMethodOfDataRoutesAsTheRouterDoes) {
  const auto config = load(kDataConfig);
  const proxy::Router router(config);
  const auto exported = exportEnvoy(config, "strangler.json");
  const json bootstrap = json::parse(exported.text);
  const auto& routes = bootstrap["static_resources"]["listeners"][0]["filter_chains"][0]["filters"]
                                [0]["typed_config"]["route_config"]["virtual_hosts"][0]["routes"];
  for (const std::string path :
       {"/api/vehicles/7", "/api/vehicles", "/api/vehicles/7/photos", "/api/licenses/3",
        "/api/ratings/5", "/api/tolls", "/api/zones/1", "/api/fares/2", "/elsewhere"}) {
    for (const std::string method :
         {"GET", "HEAD", "OPTIONS", "POST", "PUT", "DELETE", "PATCH", "TRACE", "PROPFIND"}) {
      SCOPED_TRACE(method + " " + path);
      // The Router's choices over the whole bucket range (no sticky key: a random bucket).
      std::set<std::string> upstreams;
      bool shadow = false;
      bool fallback = false;
      const proxy::RouteConfig* chosen = nullptr;
      for (const uint64_t random : {uint64_t{0}, uint64_t{9999}}) {
        const auto decision = router.decide(proxy::RequestView{method, path, nullptr}, random);
        upstreams.insert(decision.upstream);
        shadow = shadow || decision.shadow;
        fallback = fallback || !decision.fallback_upstream.empty();
        chosen = decision.route;
      }
      const auto outcome = envoyRoute(routes, method, path);
      EXPECT_EQ(outcome.clusters, upstreams);
      EXPECT_EQ(outcome.mirrors,
                shadow ? std::set<std::string>{chosen->target} : std::set<std::string>{});
      // Envoy's stand-in for the fallback (extracted only): retries on the target.
      if (chosen && chosen->stage == proxy::Stage::kExtracted) {
        EXPECT_EQ(outcome.retries, fallback);
      }
      ASSERT_EQ(outcome.names.size(), 1u);
      EXPECT_EQ(*outcome.names.begin(), chosen ? chosen->name : std::string("(no route)"));
    }
  }
  // The notes: one per data route about the cutover; the data fallback retries safe requests.
  size_t data_notes = 0;
  for (const auto& note : exported.notes)
    data_notes += note.find("fenced cutover") != std::string::npos;
  EXPECT_EQ(data_notes, 4u);
  const auto& node_notes = bootstrap["node"]["metadata"]["notes"];
  EXPECT_EQ(node_notes.size(), exported.notes.size());
  bool ratings_fallback = false;
  for (const auto& note : exported.notes) {
    if (note.rfind("route 'ratings': fallback", 0) == 0) {
      ratings_fallback = true;
      EXPECT_NE(note.find("retries safe requests"), std::string::npos) << note;
    }
  }
  EXPECT_TRUE(ratings_fallback);
  // Each data route's entries carry its note in their metadata.
  for (const auto& entry : routes) {
    if (entry["name"] != "licenses") continue;
    const auto& notes = entry["metadata"]["filter_metadata"]["strangler"]["notes"];
    ASSERT_EQ(notes.size(), 2u);  // shadow (not compared) and data
    EXPECT_NE(notes[1].get<std::string>().find("carries data 'licenses'"), std::string::npos);
  }
}

}  // namespace
}  // namespace strangler::cli
