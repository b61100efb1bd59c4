#include "strangler/proxy/config.h"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

namespace strangler::proxy {
namespace {

using nlohmann::json;

json validConfig() {
  return json::parse(R"({
    "listen": "127.0.0.1:8080",
    "admin": { "listen": "127.0.0.1:9901", "token_env": "STRANGLER_ADMIN_TOKEN" },
    "debug_headers": true,
    "upstreams": {
      "monolith":       { "endpoints": ["127.0.0.1:8081"], "timeout_ms": 2000 },
      "driver-service": { "endpoints": ["127.0.0.1:8082", "127.0.0.1:8083"], "timeout_ms": 1000,
                          "circuit_breaker": { "consecutive_failures": 5, "open_ms": 10000 } }
    },
    "default_upstream": "monolith",
    "routes": [
      { "name": "drivers",
        "match": { "path": "/api/drivers/**", "methods": ["GET", "PUT"] },
        "target": "driver-service", "stage": "canary", "percent": 25,
        "sticky": { "header": "X-User-Id" }, "fallback": true,
        "shadow": { "ignore": ["/updated_at"] } },
      { "name": "trips", "match": { "path": "/api/trips/{id}" }, "stage": "monolith" }
    ]
  })");
}

std::vector<std::string> errorsOf(const json& doc) {
  return ProxyConfig::validate(doc);
}

bool hasError(const std::vector<std::string>& errors, const std::string& text) {
  for (const auto& error : errors) {
    if (error.find(text) != std::string::npos) return true;
  }
  return false;
}

std::string joined(const std::vector<std::string>& errors) {
  std::string out;
  for (const auto& e : errors)
    out += e + "\n";
  return out;
}

TEST(ProxyConfigTest, AcceptsTheDesignExample) {
  auto config = ProxyConfig::create(validConfig());
  ASSERT_TRUE(config.ok()) << config.error().message;
  EXPECT_EQ(config->listen.port, 8080);
  EXPECT_EQ(config->admin.token_env, "STRANGLER_ADMIN_TOKEN");
  ASSERT_EQ(config->routes.size(), 2u);
  EXPECT_EQ(config->routes[0].stage, Stage::kCanary);
  EXPECT_EQ(config->routes[0].percent, 25);
  EXPECT_EQ(config->routes[0].sticky->header, "X-User-Id");
  EXPECT_EQ(config->upstreams.at("driver-service").endpoints.size(), 2u);
  EXPECT_EQ(config->upstreams.at("driver-service").circuit_breaker->consecutive_failures, 5);
  EXPECT_FALSE(config->hash.empty());
}

TEST(ProxyConfigTest, RoundTripsThroughJson) {
  auto config = ProxyConfig::create(validConfig());
  ASSERT_TRUE(config.ok());
  auto again = ProxyConfig::create(config->toJson());
  ASSERT_TRUE(again.ok()) << again.error().message;
  EXPECT_EQ(again->toJson(), config->toJson());
}

TEST(ProxyConfigTest, ReportsUnknownKeysWithTheirPath) {
  auto doc = validConfig();
  doc["colour"] = "blue";
  doc["routes"][1]["match"]["host"] = "x";
  doc["upstreams"]["monolith"]["retries"] = 3;
  const auto errors = errorsOf(doc);
  EXPECT_TRUE(hasError(errors, "colour: unknown key")) << joined(errors);
  EXPECT_TRUE(hasError(errors, "routes[1].match.host: unknown key")) << joined(errors);
  EXPECT_TRUE(hasError(errors, "upstreams.monolith.retries: unknown key")) << joined(errors);
  EXPECT_EQ(errors.size(), 3u) << joined(errors);
}

TEST(ProxyConfigTest, RejectsABadStage) {
  auto doc = validConfig();
  doc["routes"][1]["stage"] = "halfway";
  EXPECT_TRUE(hasError(errorsOf(doc), "routes[1].stage: 'halfway' is not one of"));
}

TEST(ProxyConfigTest, RejectsCanaryPercentOutOfRange) {
  auto doc = validConfig();
  doc["routes"][0]["percent"] = 150;
  EXPECT_TRUE(hasError(errorsOf(doc), "routes[0].percent: 150 is not in 1..99"));
  doc["routes"][0]["percent"] = 0;
  EXPECT_TRUE(hasError(errorsOf(doc), "routes[0].percent: 0 is not in 1..99"));
  doc["routes"][0].erase("percent");
  EXPECT_TRUE(hasError(errorsOf(doc), "routes[0].percent: is required in stage canary"));
  doc["routes"][0]["percent"] = "25";
  EXPECT_TRUE(hasError(errorsOf(doc), "routes[0].percent: \"25\" is not an integer"));
}

TEST(ProxyConfigTest, RejectsAnUnknownUpstream) {
  auto doc = validConfig();
  doc["routes"][0]["target"] = "nowhere";
  doc["default_upstream"] = "legacy";
  const auto errors = errorsOf(doc);
  EXPECT_TRUE(hasError(errors, "routes[0].target: 'nowhere' is not a defined upstream"));
  EXPECT_TRUE(hasError(errors, "default_upstream: 'legacy' is not a defined upstream"));
}

TEST(ProxyConfigTest, RejectsDuplicateRouteNames) {
  auto doc = validConfig();
  doc["routes"][1]["name"] = "drivers";
  EXPECT_TRUE(
      hasError(errorsOf(doc), "routes[1].name: 'drivers' is already the name of routes[0]"));
}

TEST(ProxyConfigTest, RejectsBadAddresses) {
  auto doc = validConfig();
  doc["listen"] = "8080";
  doc["upstreams"]["monolith"]["endpoints"] = json::array({"127.0.0.1:99999", "127.0.0.1:0"});
  const auto errors = errorsOf(doc);
  EXPECT_TRUE(hasError(errors, "listen: '8080' is not HOST:PORT")) << joined(errors);
  EXPECT_TRUE(hasError(errors, "upstreams.monolith.endpoints[0]:")) << joined(errors);
  EXPECT_TRUE(hasError(errors, "upstreams.monolith.endpoints[1]: '127.0.0.1:0' needs a port"))
      << joined(errors);
}

TEST(ProxyConfigTest, RejectsBadPathPatterns) {
  auto doc = validConfig();
  doc["routes"][1]["match"]["path"] = "/api/../admin";
  EXPECT_TRUE(hasError(errorsOf(doc), "routes[1].match.path: '/api/../admin' has a '..' segment"));
  doc["routes"][1]["match"]["path"] = "/api/**/x";
  EXPECT_TRUE(hasError(errorsOf(doc), "'**' must be the last segment"));
  doc["routes"][1]["match"]["path"] = "api/trips";
  EXPECT_TRUE(hasError(errorsOf(doc), "must start with '/'"));
  doc["routes"][1]["match"]["path"] = "/api/%2e";
  EXPECT_TRUE(hasError(errorsOf(doc), "not allowed here"));
}

TEST(ProxyConfigTest, RejectsUnknownMethods) {
  auto doc = validConfig();
  doc["routes"][0]["match"]["methods"] = json::array({"GET", "get", "FETCH"});
  const auto errors = errorsOf(doc);
  EXPECT_TRUE(hasError(errors, "routes[0].match.methods[1]: 'get' is not a known HTTP method"));
  EXPECT_TRUE(hasError(errors, "routes[0].match.methods[2]: 'FETCH'"));
}

TEST(ProxyConfigTest, RequiresATargetOutsideStageMonolith) {
  auto doc = validConfig();
  doc["routes"][1]["stage"] = "extracted";
  EXPECT_TRUE(hasError(errorsOf(doc), "routes[1].target: is required in stage extracted"));
}

TEST(ProxyConfigTest, RejectsAmbiguousSticky) {
  auto doc = validConfig();
  doc["routes"][0]["sticky"] = {{"header", "X-User-Id"}, {"cookie", "uid"}};
  EXPECT_TRUE(hasError(errorsOf(doc), "routes[0].sticky: needs exactly one of"));
}

TEST(ProxyConfigTest, RejectsOverlappingRoutes) {
  auto doc = validConfig();
  doc["routes"][1]["match"] = {{"path", "/api/drivers/**"}, {"methods", {"PUT"}}};
  EXPECT_TRUE(
      hasError(errorsOf(doc), "routes[1].match: matches the same paths and methods as routes[0]"));
  doc["routes"][1]["match"] = {{"path", "/api/drivers/**"}, {"methods", {"POST"}}};
  EXPECT_TRUE(errorsOf(doc).empty()) << joined(errorsOf(doc));
}

TEST(ProxyConfigTest, RejectsWrongTypesAndMissingKeys) {
  auto doc = validConfig();
  doc.erase("default_upstream");
  doc["debug_headers"] = "yes";
  doc["routes"][0]["fallback"] = 1;
  doc["routes"][0]["shadow"]["sample"] = 2;
  doc["upstreams"]["monolith"]["timeout_ms"] = -1;
  const auto errors = errorsOf(doc);
  EXPECT_TRUE(hasError(errors, "default_upstream: is required"));
  EXPECT_TRUE(hasError(errors, "debug_headers: must be true or false"));
  EXPECT_TRUE(hasError(errors, "routes[0].fallback: must be true or false"));
  EXPECT_TRUE(hasError(errors, "routes[0].shadow.sample: 2 is not a number in 0..1"));
  EXPECT_TRUE(hasError(errors, "upstreams.monolith.timeout_ms: -1 is not in 1..3600000"));
}

TEST(ProxyConfigTest, ReportsEveryViolationInOneMessage) {
  auto doc = validConfig();
  doc["routes"][0]["percent"] = 150;
  doc["routes"][1]["stage"] = "nope";
  auto result = ProxyConfig::create(doc);
  ASSERT_FALSE(result.ok());
  EXPECT_NE(result.error().message.find("routes[0].percent"), std::string::npos);
  EXPECT_NE(result.error().message.find("routes[1].stage"), std::string::npos);
}

TEST(ProxyConfigTest, ReadsTheDataARouteCarriesAndWritesItBack) {
  auto doc = validConfig();
  doc["routes"][0]["data"] = "drivers_v2-eu";
  auto config = ProxyConfig::create(doc);
  ASSERT_TRUE(config.ok()) << config.error().message;
  EXPECT_EQ(config->routes[0].data, "drivers_v2-eu");
  EXPECT_EQ(config->routes[1].data, "");
  const auto written = config->toJson();
  EXPECT_EQ(written["routes"][0]["data"], "drivers_v2-eu");
  EXPECT_FALSE(written["routes"][1].contains("data"));
  auto again = ProxyConfig::create(written);
  ASSERT_TRUE(again.ok()) << again.error().message;
  EXPECT_EQ(again->routes[0].data, "drivers_v2-eu");
}

TEST(ProxyConfigTest, RejectsADataNameThatIsNotAMappingName) {
  auto doc = validConfig();
  for (const json& bad : {json(""), json("drivers table"), json("../drivers"), json("drivers!"),
                          json(7), json::array({"drivers"})}) {
    doc["routes"][1]["data"] = bad;
    const auto errors = errorsOf(doc);
    EXPECT_TRUE(hasError(errors, "routes[1].data: ")) << bad.dump() << "\n" << joined(errors);
    EXPECT_EQ(errors.size(), 1u) << joined(errors);
  }
  doc["routes"][1]["data"] = "drivers table";
  EXPECT_TRUE(
      hasError(errorsOf(doc), "routes[1].data: 'drivers table' is not a sync mapping name"));
}

TEST(ProxyConfigTest, ReadsCutoverHoldMsWithADefault) {
  auto config = ProxyConfig::create(validConfig());
  ASSERT_TRUE(config.ok());
  EXPECT_EQ(config->cutover.hold_ms, 2000);
  auto doc = validConfig();
  doc["cutover"] = {{"hold_ms", 300}};
  config = ProxyConfig::create(doc);
  ASSERT_TRUE(config.ok()) << config.error().message;
  EXPECT_EQ(config->cutover.hold_ms, 300);
  EXPECT_EQ(config->toJson()["cutover"]["hold_ms"], 300);
  EXPECT_EQ(ProxyConfig::create(config->toJson())->cutover.hold_ms, 300);
}

TEST(ProxyConfigTest, RejectsABadCutover) {
  auto doc = validConfig();
  doc["cutover"] = {{"hold_ms", 0}};
  EXPECT_TRUE(hasError(errorsOf(doc), "cutover.hold_ms: 0 is not in 1..60000"));
  doc["cutover"] = {{"hold_ms", 60001}};
  EXPECT_TRUE(hasError(errorsOf(doc), "cutover.hold_ms: 60001 is not in 1..60000"));
  doc["cutover"] = {{"hold_ms", "2000"}};
  EXPECT_TRUE(hasError(errorsOf(doc), "cutover.hold_ms: \"2000\" is not an integer"));
  doc["cutover"] = {{"hold_ms", 2000}, {"drain_ms", 5}};
  EXPECT_TRUE(hasError(errorsOf(doc), "cutover.drain_ms: unknown key"));
  doc["cutover"] = 2000;
  EXPECT_TRUE(hasError(errorsOf(doc), "cutover: must be an object"));
}

TEST(ProxyConfigTest, ReadsTrustedProxiesAndMaxConnections) {
  auto doc = validConfig();
  doc["trusted_proxies"] = {"10.0.0.0/8", "192.168.1.7", "::1/128", "2001:db8::/32"};
  doc["limits"] = {{"max_connections", 50}};
  auto config = ProxyConfig::create(doc);
  ASSERT_TRUE(config.ok()) << config.error().message;
  ASSERT_EQ(config->trusted_proxies.size(), 4u);
  EXPECT_EQ(config->limits.max_connections, 50);
  const auto& ten = config->trusted_proxies[0];
  EXPECT_TRUE(ten.contains(*parseIp("10.200.3.4")));
  EXPECT_FALSE(ten.contains(*parseIp("11.0.0.1")));
  EXPECT_FALSE(ten.contains(*parseIp("::1")));
  EXPECT_TRUE(config->trusted_proxies[1].contains(*parseIp("192.168.1.7")));
  EXPECT_FALSE(config->trusted_proxies[1].contains(*parseIp("192.168.1.8")));
  EXPECT_TRUE(config->trusted_proxies[2].contains(*parseIp("::1")));
  EXPECT_TRUE(config->trusted_proxies[3].contains(*parseIp("2001:db8:ffff::9")));
  EXPECT_FALSE(config->trusted_proxies[3].contains(*parseIp("2001:db9::1")));
  const auto again = ProxyConfig::create(config->toJson());
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(again->trusted_proxies.size(), 4u);
  EXPECT_EQ(again->limits.max_connections, 50);
  EXPECT_EQ(ProxyConfig::create(validConfig())->limits.max_connections, 10000);
}

TEST(ProxyConfigTest, RejectsBadTrustedProxies) {
  auto doc = validConfig();
  doc["trusted_proxies"] = {"10.0.0.0/33", "host.example", "1.2.3.4/", 7};
  const auto errors = errorsOf(doc);
  EXPECT_TRUE(hasError(errors, "trusted_proxies[0]: '10.0.0.0/33' is not an address"))
      << joined(errors);
  EXPECT_TRUE(hasError(errors, "trusted_proxies[1]: 'host.example' is not an address"))
      << joined(errors);
  EXPECT_TRUE(hasError(errors, "trusted_proxies[2]")) << joined(errors);
  EXPECT_TRUE(hasError(errors, "trusted_proxies[3]: must be a string")) << joined(errors);
  doc["trusted_proxies"] = "10.0.0.0/8";
  EXPECT_TRUE(hasError(errorsOf(doc), "trusted_proxies: must be an array")) << joined(errors);
  doc = validConfig();
  doc["limits"] = {{"max_connections", 0}};
  EXPECT_TRUE(hasError(errorsOf(doc), "limits.max_connections: 0 is not in 1..1000000"));
}

TEST(ProxyConfigTest, RejectsInvalidJsonText) {
  auto result = ProxyConfig::parse("{ \"listen\": ");
  ASSERT_FALSE(result.ok());
  EXPECT_EQ(result.error().code, "invalid_json");
}

TEST(ProxyConfigTest, RejectsANumberTooLargeForJsonInsteadOfThrowing) {
  // Found by fuzz/config_fuzzer: the parser's number overflow escaped as an exception.
  auto result = ProxyConfig::parse("{\"workers\": 2175e1700}");
  ASSERT_FALSE(result.ok());
  EXPECT_EQ(result.error().code, "invalid_json");
}

}  // namespace
}  // namespace strangler::proxy
