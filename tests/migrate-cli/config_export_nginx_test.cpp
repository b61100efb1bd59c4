// The nginx export run by a real nginx in front of fake upstreams: every request must land where
// strangler-proxy's own Router sends it (canary: sticky per key, and about the percent of keys).
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <set>
#include <thread>

#include "proxy_harness.h"
#include "strangler/proxy/config.h"
#include "strangler/proxy/path_normalizer.h"
#include "strangler/proxy/router.h"
#include "strangler/testing/http_client.h"
#include "strangler/testing/process.h"
#include "strangler/testing/temp_dir.h"

namespace strangler::cli {
namespace {

using nlohmann::json;
using proxy::testing::FakeUpstream;
using strangler::testing::ChildProcess;
using strangler::testing::HttpResponse;

constexpr const char* kNginx = "/usr/sbin/nginx";

// One config with a route in each stage and each kind of match, and routes that carry data
// (writes go to the data's owner, never copied nor retried on the monolith).
json testConfig(uint16_t port, uint16_t admin_port, const FakeUpstream& monolith,
                const FakeUpstream& drivers, const FakeUpstream& billing) {
  json config = json::parse(R"({
    "debug_headers": true,
    "default_upstream": "monolith",
    "routes": [
      {"name": "trips", "match": {"path": "/api/trips"}, "stage": "monolith"},
      {"name": "drivers", "match": {"path": "/api/drivers/**", "methods": ["GET", "PUT"]},
       "target": "driver-service", "stage": "canary", "percent": 30,
       "sticky": {"header": "X-User-Id"}},
      {"name": "driver-location", "match": {"path": "/api/drivers/{id}/location"},
       "target": "driver-service", "stage": "extracted", "fallback": true,
       "rewrite": {"prefix": "/api/drivers", "to": "/v2/drivers"}},
      {"name": "payments", "match": {"path": "/api/payments/**"}, "target": "billing",
       "stage": "extracted", "rewrite": {"prefix": "/api/payments", "to": "/v2/"}},
      {"name": "refunds", "match": {"path": "/api/payments/{id}/refund", "methods": ["POST"]},
       "stage": "monolith"},
      {"name": "rides", "match": {"path": "/api/rides", "methods": ["POST"]}, "target": "billing",
       "stage": "extracted"},
      {"name": "invoices", "match": {"path": "/api/invoices/**"}, "target": "billing",
       "stage": "shadow", "rewrite": {"prefix": "/api/invoices", "to": "/v2/invoices"}},
      {"name": "vehicles", "match": {"path": "/api/vehicles/**"}, "target": "driver-service",
       "stage": "canary", "percent": 50, "fallback": true, "data": "vehicles"},
      {"name": "licenses", "match": {"path": "/api/licenses/**"}, "target": "driver-service",
       "stage": "shadow", "shadow": {"unsafe_methods": true}, "data": "licenses"},
      {"name": "ratings", "match": {"path": "/api/ratings/{id}"}, "target": "driver-service",
       "stage": "extracted", "fallback": true, "data": "ratings",
       "rewrite": {"prefix": "/api/ratings", "to": "/v2/ratings"}}
    ]})");
  config.merge_patch(
      json{{"listen", "127.0.0.1:" + std::to_string(port)},
           {"admin", {{"listen", "127.0.0.1:" + std::to_string(admin_port)}}},
           {"upstreams",
            {{"monolith", {{"endpoints", {monolith.address()}}, {"timeout_ms", 2000}}},
             {"driver-service", {{"endpoints", {drivers.address()}}, {"timeout_ms", 2000}}},
             {"billing", {{"endpoints", {billing.address()}}, {"timeout_ms", 2000}}}}}});
  return config;
}

class NginxExportTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!std::filesystem::exists(kNginx)) GTEST_SKIP() << kNginx << " is not installed";
    port_ = strangler::testing::freeLoopbackPort();
    admin_port_ = strangler::testing::freeLoopbackPort();
    config_json_ = testConfig(port_, admin_port_, monolith_, drivers_, billing_);
    config_path_ = dir_.file("strangler.json");
    std::ofstream(config_path_) << config_json_.dump(2);
    auto config = proxy::ProxyConfig::load(config_path_);
    ASSERT_TRUE(config.ok()) << config.error().message;
    config_ = std::make_unique<proxy::ProxyConfig>(std::move(config.value()));
    router_ = std::make_unique<proxy::Router>(*config_);

    const std::string conf = dir_.file("nginx.conf");
    const auto exported = strangler::testing::runCommand(
        STRANGLER_CLI_BIN,
        {"config", "export", "--format", "nginx", "--config", config_path_, "--output", conf},
        std::chrono::seconds(20));
    ASSERT_EQ(exported.exit_code, 0);
    const std::string prefix = dir_.file("nginx");
    std::filesystem::create_directories(prefix);
    nginx_ = ChildProcess::start(kNginx, {"-p", prefix, "-c", conf, "-g", "daemon off;"});
    // Up when the admin server answers /healthz.
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    while (std::chrono::steady_clock::now() < deadline) {
      try {
        if (strangler::testing::httpRequest("127.0.0.1", admin_port_, "GET", "/healthz", "", {},
                                            std::chrono::seconds(1))
                .status == 200)
          return;
      } catch (const std::exception&) {
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    FAIL() << "nginx did not come up; error log:\n"
           << readFile(prefix + "/strangler-nginx.error.log");
  }
  void TearDown() override {
    if (nginx_) nginx_->stop(std::chrono::seconds(5));
  }

  static std::string readFile(const std::string& path) {
    std::ifstream in(path);
    return std::string(std::istreambuf_iterator<char>(in), {});
  }

  HttpResponse send(const std::string& method, const std::string& target,
                    const std::map<std::string, std::string>& headers = {}) {
    return strangler::testing::httpRequest(
        "127.0.0.1", port_, method, target,
        // OPTIONS too: the fake upstream (Poco) reads an OPTIONS body without a length until
        // the connection closes.
        method == "POST" || method == "PUT" || method == "PATCH" || method == "OPTIONS" ? "{}" : "",
        headers, std::chrono::seconds(10));
  }

  // strangler-proxy's decision for a request, from its own normalizer and router. `random`
  // stands for the canary's random bucket when there is no sticky key (0: the target side).
  proxy::Decision expected(const std::string& method, const std::string& target,
                           const proxy::HeaderList& headers = {}, uint64_t random = 0) {
    auto normalized = proxy::normalizeTarget(target);
    EXPECT_TRUE(normalized.ok()) << target;
    path_storage_ = normalized->path;
    return router_->decide(proxy::RequestView{method, path_storage_, &headers}, random);
  }
  // Every upstream strangler-proxy may pick for a request: both ends of the bucket range.
  std::set<std::string> possibleUpstreams(const std::string& method, const std::string& target) {
    return {expected(method, target, {}, 0).upstream, expected(method, target, {}, 9999).upstream};
  }

  FakeUpstream monolith_{"monolith"};
  FakeUpstream drivers_{"driver-service"};
  FakeUpstream billing_{"billing"};
  strangler::testing::TempDir dir_{"strangler-nginx-export"};
  uint16_t port_ = 0;
  uint16_t admin_port_ = 0;
  json config_json_;
  std::string config_path_;
  std::unique_ptr<proxy::ProxyConfig> config_;
  std::unique_ptr<proxy::Router> router_;
  std::unique_ptr<ChildProcess> nginx_;
  std::string path_storage_;
};

TEST_F(NginxExportTest, EveryRequestLandsWhereStranglerProxyRoutesIt) {
  struct Case {
    std::string method;
    std::string target;
  };
  const std::vector<Case> cases = {
      {"GET", "/api/trips"},
      {"POST", "/api/trips/"},
      {"GET", "/api/trips/5"},                  // under no route
      {"GET", "/api/./trips"},                  // normalized first
      {"GET", "/api/drivers/7/location"},       // template beats the canary subtree
      {"POST", "/api/drivers/7/location?x=1"},  // any method; rewritten
      {"DELETE", "/api/drivers/7"},             // not a method of "drivers": default
      {"POST", "/api/drivers"},                 // subtree root, method not taken
      {"GET", "/api/payments"},                 // subtree root, rewritten to /v2/
      {"GET", "/api/payments/9?page=2"},        // subtree, rewritten
      {"GET", "/api/payments/9/refund"},        // refunds is POST-only: payments serves it
      {"POST", "/api/payments/9/refund"},       // refunds (monolith)
      {"POST", "/api//payments/9/refund"},      // repeated '/' folded
      {"GET", "/api/payments/9/refund/extra"},  // deeper than the template: subtree
      {"POST", "/api/rides"},                   // method-restricted exact route
      {"GET", "/api/rides"},                    // ... other methods: default
      {"PATCH", "/api/rides/"},                 // trailing '/'
      {"GET", "/api/invoices/3"},               // shadow: served by the monolith
      {"GET", "/api/paymentsX/1"},              // not on a segment boundary: default
      {"PUT", "/api/vehicles/4"},               // data canary: writes go to the owner
      {"POST", "/api/vehicles"},                // ... the subtree root too
      {"DELETE", "/api/vehicles/4?x=1"},        // ... idempotent but unsafe
      {"PATCH", "/api/vehicles/4"},             //
      {"GET", "/api/licenses/2"},               // data shadow: served by the monolith
      {"PUT", "/api/licenses/2"},               //
      {"GET", "/api/ratings/5?full=1"},         // data extracted: every method to the target
      {"PUT", "/api/ratings/5"},                // ... rewritten
      {"DELETE", "/api/ratings/5/"},            //
      {"POST", "/api/ratings/5"},               //
      {"GET", "/elsewhere"},
      {"GET", "/"},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.method + " " + c.target);
    const auto decision = expected(c.method, c.target);
    HttpResponse response;
    try {
      response = send(c.method, c.target);
    } catch (const std::exception& e) {
      ADD_FAILURE() << "no answer: " << e.what();
      continue;
    }
    ASSERT_EQ(response.status, 200) << response.body;
    const json body = response.json();
    EXPECT_EQ(body["upstream"], decision.upstream);
    EXPECT_EQ(response.header("x-strangler-upstream"), decision.upstream);
    EXPECT_EQ(response.header("x-strangler-route"),
              decision.route ? decision.route->name : std::string("-"));
    if (decision.to_target) {
      // The path the target gets is the router's (rewritten), with the query as sent.
      const auto query = c.target.find('?');
      EXPECT_EQ(body["uri"],
                decision.path + (query == std::string::npos ? "" : c.target.substr(query)));
    }
  }
}

TEST_F(NginxExportTest, CanaryKeepsEachKeyOnOneSideAndSplitsKeysByThePercent) {
  int to_target = 0;
  constexpr int kKeys = 200;
  for (int i = 0; i < kKeys; ++i) {
    const std::string key = "user-" + std::to_string(i);
    std::set<std::string> sides;
    for (int round = 0; round < 2; ++round) {
      const auto response =
          send("GET", "/api/drivers/" + std::to_string(round + 1), {{"X-User-Id", key}});
      ASSERT_EQ(response.status, 200);
      EXPECT_EQ(response.header("x-strangler-route"), "drivers");
      sides.insert(response.json()["upstream"].get<std::string>());
    }
    EXPECT_EQ(sides.size(), 1u) << key << " moved between sides";
    if (sides.count("driver-service")) ++to_target;
  }
  // 30 % of 200 keys: 60 expected, binomial σ ≈ 6.5.
  EXPECT_GE(to_target, 35);
  EXPECT_LE(to_target, 85);
}

TEST_F(NginxExportTest, ShadowCopiesGoToTheTargetAndTheClientGetsTheMonolith) {
  const auto response = send("GET", "/api/invoices/3?full=1", {{"X-Strangler-Route", "evil"}});
  ASSERT_EQ(response.status, 200);
  EXPECT_EQ(response.json()["upstream"], "monolith");
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
  while (billing_.count() == 0 && std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  ASSERT_EQ(billing_.count(), 1u);
  const auto copy = billing_.requests().front();
  EXPECT_EQ(copy.uri, "/v2/invoices/3?full=1");  // rewritten for the target
  EXPECT_EQ(copy.header("x-strangler-shadow"), "1");
  EXPECT_FALSE(copy.has("x-strangler-route"));
  // The client's X-Strangler-* headers never reach an upstream.
  ASSERT_EQ(monolith_.count(), 1u);
  EXPECT_FALSE(monolith_.requests().front().has("x-strangler-route"));

  // Unsafe methods are not shadowed (the route does not allow them).
  billing_.clear();
  ASSERT_EQ(send("POST", "/api/invoices/3").status, 200);
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  EXPECT_EQ(billing_.count(), 0u);
}

TEST_F(NginxExportTest, FallbackServesIdempotentRequestsFromTheMonolithWhenTheTargetFails) {
  drivers_.status = 503;
  const auto get = send("GET", "/api/drivers/7/location?fresh=1");
  ASSERT_EQ(get.status, 200);
  EXPECT_EQ(get.json()["upstream"], "monolith");
  EXPECT_EQ(get.json()["uri"], "/api/drivers/7/location?fresh=1");  // the client's path
  EXPECT_EQ(get.header("x-strangler-route"), "driver-location");
  // Not for POST: the target's answer reaches the client.
  EXPECT_EQ(send("POST", "/api/drivers/7/location").status, 503);

  drivers_.stop();  // connection refused
  const auto refused = send("PUT", "/api/drivers/7/location");
  EXPECT_EQ(refused.status, 200);
  EXPECT_EQ(refused.json()["upstream"], "monolith");
}

TEST_F(NginxExportTest, DataCanarySplitsOnlySafeMethodsAndSendsWritesToTheOwner) {
  // 24 requests per method at 50 %: a side the router may pick is missed with p < 1e-7.
  constexpr int kRounds = 24;
  for (const std::string method : {"GET", "HEAD", "OPTIONS", "PUT", "POST", "DELETE", "PATCH"}) {
    const std::string target = "/api/vehicles/" + std::to_string(method.size());
    SCOPED_TRACE(method + " " + target);
    const auto possible = possibleUpstreams(method, target);
    std::set<std::string> seen;
    for (int i = 0; i < kRounds; ++i) {
      const auto response = send(method, target);
      ASSERT_EQ(response.status, 200);
      EXPECT_EQ(response.header("x-strangler-route"), "vehicles");
      const std::string upstream = response.header("x-strangler-upstream");
      EXPECT_EQ(possible.count(upstream), 1u) << upstream << " is not a side the router picks";
      seen.insert(upstream);
    }
    EXPECT_EQ(seen, possible);  // reads split both ways; writes only ever on the monolith
    if (proxy::isSafe(method)) {
      EXPECT_EQ(possible.size(), 2u);
    } else {
      EXPECT_EQ(possible, std::set<std::string>{"monolith"});
    }
  }
}

TEST_F(NginxExportTest, DataShadowNeverCopiesWritesEvenWithUnsafeMethods) {
  std::set<std::string> copied;  // the methods the router has copied to the target
  for (const std::string method : {"GET", "HEAD", "OPTIONS", "PUT", "POST", "DELETE", "PATCH"}) {
    SCOPED_TRACE(method);
    const std::string target = "/api/licenses/" + method;
    const auto decision = expected(method, target);
    if (decision.shadow) copied.insert(method);
    const auto response = send(method, target);
    ASSERT_EQ(response.status, 200);
    EXPECT_EQ(response.header("x-strangler-upstream"), decision.upstream);
    EXPECT_EQ(response.header("x-strangler-route"), "licenses");
  }
  ASSERT_EQ(copied, (std::set<std::string>{"GET", "HEAD", "OPTIONS"}));
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
  while (drivers_.count() < copied.size() && std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  std::this_thread::sleep_for(std::chrono::milliseconds(300));  // a late copy would show now
  std::set<std::string> received;
  for (const auto& request : drivers_.requests()) {
    received.insert(request.method);
    EXPECT_EQ(request.uri, "/api/licenses/" + request.method);
    EXPECT_EQ(request.header("x-strangler-shadow"), "1");
  }
  EXPECT_EQ(received, copied);
  EXPECT_EQ(drivers_.count(), copied.size());
}

TEST_F(NginxExportTest, DataFallbackServesOnlySafeMethodsFromTheMonolith) {
  drivers_.status = 503;
  for (const std::string method : {"GET", "HEAD", "OPTIONS", "PUT", "DELETE", "POST", "PATCH"}) {
    SCOPED_TRACE(method);
    const std::string target = "/api/ratings/5?fresh=1";
    const auto decision = expected(method, target);
    ASSERT_EQ(decision.upstream, "driver-service");
    const auto response = send(method, target);
    EXPECT_EQ(response.header("x-strangler-route"), "ratings");
    if (!decision.fallback_upstream.empty()) {
      // The target failed; the monolith answers with the client's path.
      EXPECT_EQ(decision.fallback_upstream, "monolith");
      EXPECT_TRUE(proxy::isSafe(method));
      EXPECT_EQ(response.status, 200);
      EXPECT_EQ(response.header("x-strangler-upstream"), "monolith");
      if (method != "HEAD") {
        EXPECT_EQ(response.json()["uri"], "/api/ratings/5?fresh=1");
      }
    } else {
      // A write on data the target owns is never retried on the monolith: its answer stands.
      EXPECT_FALSE(proxy::isSafe(method));
      EXPECT_EQ(response.status, 503);
      EXPECT_EQ(response.header("x-strangler-upstream"), "driver-service");
    }
  }
  // Canary with fallback: its reads on the target side fall back too; its writes go to the
  // monolith, which owns the data, and never reach the target at all.
  EXPECT_EQ(expected("GET", "/api/vehicles/1").fallback_upstream, "monolith");
  EXPECT_EQ(expected("PUT", "/api/vehicles/1").upstream, "monolith");
  const size_t target_before = drivers_.count();
  for (int i = 0; i < 16; ++i) {
    const auto read = send("GET", "/api/vehicles/1");
    EXPECT_EQ(read.status, 200);
    EXPECT_EQ(read.json()["upstream"], "monolith");
    const auto write = send("PUT", "/api/vehicles/1");
    EXPECT_EQ(write.status, 200);
    EXPECT_EQ(write.json()["upstream"], "monolith");
  }
  const auto at_target = drivers_.requests();
  for (size_t i = target_before; i < at_target.size(); ++i)
    EXPECT_EQ(at_target[i].method, "GET");

  drivers_.stop();  // connection refused
  EXPECT_EQ(send("GET", "/api/ratings/5").header("x-strangler-upstream"), "monolith");
  const auto refused = send("PUT", "/api/ratings/5");
  // nginx's own answer for a target that is down (502, or 504 when the connect times out).
  EXPECT_TRUE(refused.status == 502 || refused.status == 504) << refused.status;
  EXPECT_EQ(refused.header("x-strangler-upstream"), "driver-service");
  // No write on "ratings" ever reached the monolith.
  for (const auto& request : monolith_.requests()) {
    if (request.uri.rfind("/api/ratings/", 0) == 0) {
      EXPECT_TRUE(proxy::isSafe(request.method)) << request.method << " " << request.uri;
    }
  }
}

TEST_F(NginxExportTest, StranglerProxyOnTheSameConfigAgreesOnSpotChecks) {
  json proxy_config = config_json_;
  proxy_config["listen"] = "127.0.0.1:0";
  proxy_config["admin"]["listen"] = "127.0.0.1:0";
  proxy::testing::ProxyProcess strangler_proxy(proxy_config);
  ASSERT_TRUE(strangler_proxy.running());
  for (const auto& [method, target] :
       std::vector<std::pair<std::string, std::string>>{{"GET", "/api/drivers/7/location"},
                                                        {"GET", "/api/payments/9/refund"},
                                                        {"POST", "/api/payments/9/refund"},
                                                        {"GET", "/api/rides"},
                                                        {"DELETE", "/api/drivers/7"},
                                                        {"PUT", "/api/vehicles/4"},
                                                        {"DELETE", "/api/vehicles/4"},
                                                        {"GET", "/api/licenses/2"},
                                                        {"PUT", "/api/licenses/2"},
                                                        {"GET", "/api/ratings/5"},
                                                        {"PUT", "/api/ratings/5"}}) {
    SCOPED_TRACE(method + " " + target);
    const auto via_nginx = send(method, target);
    const auto via_proxy = strangler_proxy.request(method, target, method == "POST" ? "{}" : "");
    ASSERT_EQ(via_nginx.status, 200);
    ASSERT_EQ(via_proxy.status, 200);
    EXPECT_EQ(via_nginx.json()["upstream"], via_proxy.json()["upstream"]);
    EXPECT_EQ(via_nginx.json()["uri"], via_proxy.json()["uri"]);
    EXPECT_EQ(via_nginx.header("x-strangler-route"), via_proxy.header("x-strangler-route"));
  }
}

/// A config with an HTTPS listener (`dir`'s cert.pem and key.pem), `monolith` as the default
/// upstream and one more upstream `name` (`upstream`) owning `path`, exported to nginx and
/// started. `nginx` is null when the export failed (the test has failed then).
struct ExportedNginx {
  std::unique_ptr<ChildProcess> nginx;
  uint16_t tls_port = 0;
  std::string conf;  ///< the exported nginx.conf
};

ExportedNginx exportWithTlsAndStart(strangler::testing::TempDir& dir, const FakeUpstream& monolith,
                                    const std::string& name, const json& upstream,
                                    const std::string& path) {
  ExportedNginx out;
  out.tls_port = strangler::testing::freeLoopbackPort();
  const json config = {
      {"listen", "127.0.0.1:" + std::to_string(strangler::testing::freeLoopbackPort())},
      {"tls",
       {{"listen", "127.0.0.1:" + std::to_string(out.tls_port)},
        {"cert_file", dir.file("cert.pem")},
        {"key_file", dir.file("key.pem")}}},
      {"admin",
       {{"listen", "127.0.0.1:" + std::to_string(strangler::testing::freeLoopbackPort())}}},
      {"upstreams", {{"monolith", {{"endpoints", {monolith.address()}}}}, {name, upstream}}},
      {"default_upstream", "monolith"},
      {"routes",
       {{{"name", name}, {"match", {{"path", path}}}, {"target", name}, {"stage", "extracted"}}}}};
  const std::string config_path = dir.file("strangler.json");
  std::ofstream(config_path) << config.dump(2);
  const std::string conf = dir.file("nginx.conf");
  const auto exported = strangler::testing::runCommand(
      STRANGLER_CLI_BIN,
      {"config", "export", "--format", "nginx", "--config", config_path, "--output", conf},
      std::chrono::seconds(20));
  EXPECT_EQ(exported.exit_code, 0) << exported.output;
  if (exported.exit_code != 0) return out;
  std::ifstream in(conf);
  out.conf.assign(std::istreambuf_iterator<char>(in), {});
  const std::string prefix = dir.file("nginx");
  std::filesystem::create_directories(prefix);
  out.nginx = ChildProcess::start(kNginx, {"-p", prefix, "-c", conf, "-g", "daemon off;"});
  return out;
}

TEST(NginxExportTlsTest, TheHttpsListenerServesAndUpstreamTlsIsVerified) {
  // The "tls" listener becomes an nginx `listen ... ssl http2` with the same certificate (served
  // here: the certificate verifies, the request lands on the monolith), and an
  // upstream with "tls" is proxied over https with proxy_ssl_verify against its ca_file (nginx
  // loads that file at start, so a wrong directive fails the start).
  if (!std::filesystem::exists(kNginx)) GTEST_SKIP() << kNginx << " is not installed";
  strangler::testing::TempDir dir("strangler-nginx-export-tls");
  proxy::testing::makeCertificate(dir.file("cert.pem"), dir.file("key.pem"), "127.0.0.1");
  FakeUpstream monolith("monolith");
  auto exported = exportWithTlsAndStart(
      dir, monolith, "secure",
      {{"endpoints", {"127.0.0.1:9"}},
       {"tls", {{"ca_file", dir.file("cert.pem")}, {"server_name", "svc.internal"}}}},
      "/api/secure/**");
  ASSERT_TRUE(exported.nginx);
  const std::string& text = exported.conf;
  EXPECT_NE(text.find("proxy_ssl_verify on;"), std::string::npos) << text;
  EXPECT_NE(text.find("proxy_ssl_name \"svc.internal\";"), std::string::npos) << text;
  EXPECT_NE(text.find(" ssl http2;"), std::string::npos) << text;
  const std::string url =
      "https://127.0.0.1:" + std::to_string(exported.tls_port) + "/api/orders/1";
  strangler::common::CommandResult answer;
  for (int i = 0; i < 100; ++i) {  // until nginx is up
    // HTTP/1.1: the fake upstream answers with "Upgrade: h2c" (to check that proxies drop it),
    // which nginx 1.22 relays, and an HTTP/2 client refuses.
    answer = proxy::testing::withStderr(
        "/usr/bin/curl", {"-sS", "-i", "--http1.1", "--cacert", dir.file("cert.pem"), url});
    if (answer.exit_code == 0) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  EXPECT_EQ(answer.output.rfind("HTTP/1.1 200", 0), 0u) << answer.output;
  EXPECT_NE(answer.output.find("\"upstream\":\"monolith\""), std::string::npos) << answer.output;
  exported.nginx->stop(std::chrono::seconds(5));
}

TEST(NginxExportTlsTest, GrpcCallsPassThroughTheExportToAnHttp2Upstream) {
  // An upstream with "protocol": "h2" becomes grpc_pass: a real gRPC client (grpc_peer.py) calls
  // through nginx's HTTPS listener (ALPN h2) to a real gRPC server — unary calls, streams both
  // ways, and a failing call whose status arrives in the trailers.
  if (!std::filesystem::exists(kNginx)) GTEST_SKIP() << kNginx << " is not installed";
  strangler::testing::TempDir dir("strangler-nginx-export-grpc");
  proxy::testing::makeCertificate(dir.file("cert.pem"), dir.file("key.pem"), "localhost",
                                  "DNS:localhost");
  auto server =
      ChildProcess::start(STRANGLER_SYSTEM_PYTHON3, {STRANGLER_GRPC_PEER, "server", "service"});
  const auto listening = server->waitForLine("listening on 127.0.0.1:", std::chrono::seconds(20));
  ASSERT_TRUE(listening) << server->output();
  FakeUpstream monolith("monolith");
  auto exported = exportWithTlsAndStart(
      dir, monolith, "echo",
      {{"endpoints", {listening->substr(listening->find("127.0.0.1:"))}}, {"protocol", "h2"}},
      "/strangler.test.Echo/**");
  ASSERT_TRUE(exported.nginx);
  int probe = -1;
  for (int i = 0; i < 200 && probe < 0; ++i) {  // until nginx is up
    probe = proxy::testing::connectLoopback(exported.tls_port, 1);
    if (probe < 0) std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  ASSERT_GE(probe, 0) << "nginx did not come up";
  ::close(probe);
  const auto run = strangler::testing::runCommand(
      STRANGLER_SYSTEM_PYTHON3,
      {STRANGLER_GRPC_PEER, "client", "127.0.0.1:" + std::to_string(exported.tls_port), "--calls",
       "100", "--cafile", dir.file("cert.pem"), "--name", "localhost"},
      std::chrono::seconds(120));
  ASSERT_EQ(run.exit_code, 0) << run.output;
  const size_t line = run.output.rfind("\n{");
  const auto report =
      json::parse(run.output.substr(line == std::string::npos ? run.output.find('{') : line + 1),
                  nullptr, false);
  ASSERT_TRUE(report.is_object()) << run.output;
  EXPECT_EQ(report["ok"], 100) << report.dump();
  EXPECT_EQ(report["sides"]["service"], 100) << report.dump();
  EXPECT_EQ(report["stream"], 200) << report.dump();
  EXPECT_EQ(report["chat"], 50) << report.dump();
  EXPECT_EQ(report["failure"]["code"], "INVALID_ARGUMENT") << report.dump();
  exported.nginx->stop(std::chrono::seconds(5));
}

TEST(ConfigExportCliTest, RefusesBadConfigsAndReportsUsageErrors) {
  strangler::testing::TempDir dir("strangler-export-cli");
  const std::string bad = dir.file("bad.json");
  std::ofstream(bad) << R"({"upstreams": {"m": {"endpoints": ["127.0.0.1:1"]}},
    "default_upstream": "m",
    "routes": [{"name": "x", "match": {"path": "/x"}, "target": "nowhere", "stage": "extracted"}]})";
  const std::string out = dir.file("out.conf");
  const auto refused = strangler::testing::runCommand(
      STRANGLER_CLI_BIN, {"config", "export", "--format", "nginx", "--config", bad, "-o", out});
  EXPECT_EQ(refused.exit_code, 1);
  EXPECT_FALSE(std::filesystem::exists(out));  // nothing written
  EXPECT_EQ(strangler::testing::runCommand(STRANGLER_CLI_BIN,
                                           {"config", "export", "--format", "apache", bad})
                .exit_code,
            2);
  EXPECT_EQ(strangler::testing::runCommand(STRANGLER_CLI_BIN, {"config", "export"}).exit_code, 2);
  const auto help =
      strangler::testing::runCommand(STRANGLER_CLI_BIN, {"config", "export", "--help"});
  EXPECT_EQ(help.exit_code, 0);
  EXPECT_NE(help.output.find("strangler config export --format nginx"), std::string::npos);
  // The validate verb still lives in the same group.
  const auto validate =
      strangler::testing::runCommand(STRANGLER_CLI_BIN, {"config", "validate", bad});
  EXPECT_EQ(validate.exit_code, 1);
}

}  // namespace
}  // namespace strangler::cli
