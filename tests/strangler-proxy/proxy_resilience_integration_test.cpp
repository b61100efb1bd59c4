// Integration: fallback, circuit breaking, timeouts, hot reload, admin API and graceful stop,
// with the real strangler-proxy binary and fake upstreams on loopback.
#include <gtest/gtest.h>

#include <csignal>
#include <fstream>
#include <random>
#include <thread>

#include "proxy_harness.h"

namespace strangler::proxy::testing {
namespace {

using nlohmann::json;
using std::chrono::milliseconds;

const strangler::testing::ChildProcess::Env kTokenEnv = {
    {"STRANGLER_TEST_ADMIN_TOKEN", "test-token"}};
const std::map<std::string, std::string> kAuth = {{"Authorization", "Bearer test-token"}};

class ProxyResilienceTest : public ::testing::Test {
 protected:
  FakeUpstream monolith_{"monolith"};
  FakeUpstream service_{"service"};

  json config(int failures = 3, int open_ms = 600, int timeout_ms = 3000) {
    json config = baseConfig(monolith_);
    addUpstream(config, service_,
                {{"timeout_ms", timeout_ms},
                 {"connect_timeout_ms", 500},
                 {"circuit_breaker", {{"consecutive_failures", failures}, {"open_ms", open_ms}}}});
    config["routes"] = json::array({{{"name", "drivers"},
                                     {"match", {{"path", "/api/drivers/**"}}},
                                     {"target", "service"},
                                     {"stage", "extracted"},
                                     {"fallback", true}},
                                    {{"name", "nofallback"},
                                     {"match", {{"path", "/api/strict/**"}}},
                                     {"target", "service"},
                                     {"stage", "extracted"}}});
    return config;
  }

  static std::string metric(ProxyProcess& proxy, const std::string& prefix) {
    const std::string text = proxy.admin("GET", "/metrics").body;
    const size_t at = text.find("\n" + prefix);
    if (at == std::string::npos) return "";
    const size_t end = text.find('\n', at + 1);
    return text.substr(at + 1, end - at - 1);
  }
};

TEST_F(ProxyResilienceTest, FallbackServesGetsWhenTheTargetIsDown) {
  service_.stop();
  ProxyProcess proxy(config(1000));
  ASSERT_TRUE(proxy.running());
  for (int i = 0; i < 20; ++i) {
    const auto response = proxy.get("/api/drivers/" + std::to_string(i));
    EXPECT_EQ(response.status, 200);
    EXPECT_EQ(response.json()["upstream"], "monolith");
    EXPECT_EQ(response.json()["uri"], "/api/drivers/" + std::to_string(i));
  }
  // Non-idempotent requests are never replayed elsewhere.
  const auto post = proxy.request("POST", "/api/drivers/1", "{}");
  EXPECT_EQ(post.status, 502);
  EXPECT_EQ(post.json()["error"], "upstream_unavailable");
  EXPECT_EQ(monolith_.count(), 20u);
  EXPECT_NE(metric(proxy, "strangler_proxy_fallbacks_total{route=\"drivers\",reason=\"connect\"}"),
            "");
}

TEST_F(ProxyResilienceTest, UpstreamDownWithoutFallbackIs502) {
  service_.stop();
  ProxyProcess proxy(config(1000));
  ASSERT_TRUE(proxy.running());
  const auto response = proxy.get("/api/strict/1");
  EXPECT_EQ(response.status, 502);
  EXPECT_EQ(response.header("content-type"), "application/json");
  EXPECT_EQ(response.json()["error"], "upstream_unavailable");
}

TEST_F(ProxyResilienceTest, SlowUpstreamIs504OrFallsBack) {
  ProxyProcess proxy(config(1000, 600, 300));
  ASSERT_TRUE(proxy.running());
  service_.delay_ms = 3000;
  const auto start = std::chrono::steady_clock::now();
  auto response = proxy.get("/api/strict/1");
  EXPECT_EQ(response.status, 504);
  EXPECT_EQ(response.json()["error"], "upstream_timeout");
  EXPECT_LT(std::chrono::steady_clock::now() - start, milliseconds(2500));
  response = proxy.get("/api/drivers/1");
  EXPECT_EQ(response.status, 200);
  EXPECT_EQ(response.json()["upstream"], "monolith");
}

TEST_F(ProxyResilienceTest, FiveHundredsFallBackAndOpenTheCircuit) {
  ProxyProcess proxy(config(3, 800));
  ASSERT_TRUE(proxy.running());
  service_.status = 503;
  for (int i = 0; i < 10; ++i) {
    const auto response = proxy.get("/api/drivers/" + std::to_string(i));
    EXPECT_EQ(response.status, 200);
    EXPECT_EQ(response.json()["upstream"], "monolith");
  }
  // Three failures opened the circuit: the rest never reached the target.
  EXPECT_EQ(service_.count(), 3u);
  EXPECT_EQ(metric(proxy, "strangler_proxy_circuit_state{upstream=\"service\"}"),
            "strangler_proxy_circuit_state{upstream=\"service\"} 1");
  EXPECT_EQ(proxy.get("/api/strict/1").status, 503) << "no fallback: refused while open";

  // Recovery: after open_ms one probe goes through; its success closes the circuit.
  service_.status = 200;
  std::this_thread::sleep_for(milliseconds(900));
  auto response = proxy.get("/api/drivers/probe");
  EXPECT_EQ(response.json()["upstream"], "service");
  response = proxy.get("/api/drivers/after");
  EXPECT_EQ(response.json()["upstream"], "service");
  EXPECT_EQ(metric(proxy, "strangler_proxy_circuit_state{upstream=\"service\"}"),
            "strangler_proxy_circuit_state{upstream=\"service\"} 0");
}

// The target is a real process, killed with SIGKILL while traffic flows, then restarted.
TEST_F(ProxyResilienceTest, OpenCircuitSendsCanaryTrafficToTheMonolith) {
  json cfg = config(3, 60000);
  cfg["routes"].push_back({{"name", "trial"},
                           {"match", {{"path", "/api/trial/**"}}},
                           {"target", "service"},
                           {"stage", "canary"},
                           {"percent", 99}});
  ProxyProcess proxy(cfg);
  ASSERT_TRUE(proxy.running());
  service_.status = 500;
  std::vector<int> statuses;
  for (int i = 0; i < 20; ++i)
    statuses.push_back(proxy.request("POST", "/api/trial/" + std::to_string(i), "{}").status);
  // Without fallback the target's 500s reach the client until the circuit opens; then every
  // request, POST included, is served by the monolith.
  for (int i = 10; i < 20; ++i)
    EXPECT_EQ(statuses[static_cast<size_t>(i)], 200) << i;
  EXPECT_EQ(service_.count(), 3u);
}

TEST_F(ProxyResilienceTest, BackendKilledMidTestFallbackServesThenRecovers) {
  auto startBackend = [](uint16_t port) {
    auto backend = strangler::testing::ChildProcess::start(
        STRANGLER_PYTHON3, {STRANGLER_FAKE_BACKEND, "service", std::to_string(port)});
    const auto line = backend->waitForLine("listening on 127.0.0.1:", std::chrono::seconds(10));
    const uint16_t bound =
        line ? static_cast<uint16_t>(std::stoi(line->substr(line->rfind(':') + 1))) : 0;
    return std::make_pair(std::move(backend), bound);
  };
  auto [backend, port] = startBackend(0);
  ASSERT_NE(port, 0);
  json cfg = config(2, 500);
  cfg["upstreams"]["service"]["endpoints"] = {"127.0.0.1:" + std::to_string(port)};
  ProxyProcess proxy(cfg);
  ASSERT_TRUE(proxy.running());

  std::atomic<bool> stop{false};
  std::atomic<int> failures{0};
  std::atomic<int> from_service{0};
  std::atomic<int> from_monolith{0};
  std::vector<std::thread> clients;
  for (int t = 0; t < 3; ++t) {
    clients.emplace_back([&, t] {
      for (int i = 0; !stop; ++i) {
        try {
          const auto response =
              proxy.get("/api/drivers/" + std::to_string(t) + "-" + std::to_string(i));
          if (response.status != 200) {
            ++failures;
          } else if (response.json()["upstream"] == "service") {
            ++from_service;
          } else {
            ++from_monolith;
          }
        } catch (const std::exception&) {
          ++failures;
        }
      }
    });
  }
  std::this_thread::sleep_for(milliseconds(400));
  const int service_before_kill = from_service.load();
  backend->signal(SIGKILL);
  backend->wait(std::chrono::seconds(5));
  std::this_thread::sleep_for(milliseconds(800));
  const int monolith_during_outage = from_monolith.load();
  auto restarted = startBackend(port);
  ASSERT_EQ(restarted.second, port);
  std::this_thread::sleep_for(milliseconds(1000));
  const int service_after_recovery_start = from_service.load();
  std::this_thread::sleep_for(milliseconds(400));
  stop = true;
  for (auto& client : clients)
    client.join();
  EXPECT_EQ(failures.load(), 0) << "GETs must never fail while the monolith can serve them";
  EXPECT_GT(service_before_kill, 0);
  EXPECT_GT(monolith_during_outage, 0) << "fallback served during the outage";
  EXPECT_GT(from_service.load(), service_after_recovery_start) << "traffic returns to the target";
  EXPECT_NE(proxy.admin("GET", "/metrics")
                .body.find("strangler_proxy_circuit_openings_total{upstream=\"service\"}"),
            std::string::npos);
}

TEST_F(ProxyResilienceTest, ReloadAppliesAValidConfigAndKeepsTheOldOneOnErrors) {
  ProxyProcess proxy(config(), kTokenEnv);
  ASSERT_TRUE(proxy.running());
  EXPECT_EQ(proxy.get("/api/drivers/1").json()["upstream"], "service");

  auto next = config();
  next["routes"][0]["stage"] = "monolith";
  proxy.writeConfig(next);
  auto response = proxy.admin("POST", "/reload", kAuth);
  ASSERT_EQ(response.status, 200) << response.body;
  EXPECT_EQ(response.json()["version"], 2);
  EXPECT_EQ(proxy.get("/api/drivers/1").json()["upstream"], "monolith");

  auto broken = next;
  broken["routes"][0]["stage"] = "canary";
  broken["routes"][0]["percent"] = 150;
  broken["routes"][1]["target"] = "nowhere";
  proxy.writeConfig(broken);
  response = proxy.admin("POST", "/reload", kAuth);
  EXPECT_EQ(response.status, 400);
  const std::string errors = response.json()["errors"].dump();
  EXPECT_NE(errors.find("routes[0].percent: 150 is not in 1..99"), std::string::npos) << errors;
  EXPECT_NE(errors.find("routes[1].target: 'nowhere' is not a defined upstream"), std::string::npos)
      << errors;
  EXPECT_EQ(proxy.get("/api/drivers/1").json()["upstream"], "monolith");
  EXPECT_EQ(proxy.admin("GET", "/routes").json()["version"], 2);

  // SIGHUP reloads too.
  proxy.writeConfig(config());
  proxy.process().signal(SIGHUP);
  ASSERT_TRUE(proxy.process().waitForLine("reloaded config version 3", std::chrono::seconds(5)));
  EXPECT_EQ(proxy.get("/api/drivers/1").json()["upstream"], "service");
}

TEST_F(ProxyResilienceTest, RequestsInFlightFinishOnTheConfigTheyStartedWith) {
  ProxyProcess proxy(config(), kTokenEnv);
  ASSERT_TRUE(proxy.running());
  service_.delay_ms = 800;
  std::string slow_upstream;
  std::thread slow([&] { slow_upstream = proxy.get("/api/drivers/slow").json()["upstream"]; });
  ASSERT_TRUE(waitFor([&] { return service_.count() > 0; }));  // the slow request is at the service
  auto next = config();
  next["routes"][0]["stage"] = "monolith";
  proxy.writeConfig(next);
  ASSERT_EQ(proxy.admin("POST", "/reload", kAuth).status, 200);
  EXPECT_EQ(proxy.get("/api/drivers/fast").json()["upstream"], "monolith");
  slow.join();
  EXPECT_EQ(slow_upstream, "service");
}

TEST_F(ProxyResilienceTest, ReloadUnderLoadDropsNoRequest) {
  ProxyProcess proxy(config(), kTokenEnv);
  ASSERT_TRUE(proxy.running());
  std::atomic<bool> stop{false};
  std::atomic<int> failures{0};
  std::atomic<int> served{0};
  std::vector<std::thread> clients;
  for (int t = 0; t < 4; ++t) {
    clients.emplace_back([&] {
      while (!stop) {
        try {
          if (proxy.request("POST", "/api/drivers/x", "{\"a\":1}").status != 200) ++failures;
          ++served;
        } catch (const std::exception&) {
          ++failures;
        }
      }
    });
  }
  for (int i = 0; i < 10; ++i) {
    auto next = config();
    next["routes"][0]["stage"] = i % 2 == 0 ? "monolith" : "extracted";
    proxy.writeConfig(next);
    EXPECT_EQ(proxy.admin("POST", "/reload", kAuth).status, 200);
    std::this_thread::sleep_for(milliseconds(50));
  }
  stop = true;
  for (auto& client : clients)
    client.join();
  EXPECT_EQ(failures.load(), 0);
  EXPECT_GT(served.load(), 40);
  EXPECT_EQ(proxy.admin("GET", "/routes").json()["version"], 11);
}

TEST_F(ProxyResilienceTest, AdminRequiresTheTokenForReload) {
  {
    ProxyProcess proxy(config());  // token env var not set: mutations are refused
    ASSERT_TRUE(proxy.running());
    EXPECT_EQ(proxy.admin("POST", "/reload").status, 403);
    EXPECT_EQ(proxy.admin("POST", "/reload", kAuth).status, 403);
    EXPECT_EQ(proxy.admin("GET", "/healthz").status, 200);
  }
  ProxyProcess proxy(config(), kTokenEnv);
  ASSERT_TRUE(proxy.running());
  EXPECT_EQ(proxy.admin("POST", "/reload").status, 401);
  EXPECT_EQ(proxy.admin("POST", "/reload", {{"Authorization", "Bearer wrong-token"}}).status, 401);
  EXPECT_EQ(proxy.admin("POST", "/reload", {{"Authorization", "test-token"}}).status, 401);
  EXPECT_EQ(proxy.admin("POST", "/reload", kAuth).status, 200);
  EXPECT_EQ(proxy.admin("GET", "/reload").status, 405);
}

TEST_F(ProxyResilienceTest, AdminRefusesANonLoopbackAddressWithoutAToken) {
  strangler::testing::TempDir dir;
  const std::string path = dir.file("strangler.json");
  std::ofstream(path) << config().dump();
  const auto result = strangler::testing::runCommand(
      STRANGLER_PROXY_BINARY, {"--config", path, "--admin-listen", "0.0.0.0:0"},
      std::chrono::seconds(10));
  EXPECT_FALSE(result.timed_out);
  EXPECT_EQ(result.exit_code, 1);
}

TEST_F(ProxyResilienceTest, CheckConfigReportsEveryErrorAndExits) {
  strangler::testing::TempDir dir;
  const std::string path = dir.file("strangler.json");
  std::ofstream(path) << config().dump();
  auto result = strangler::testing::runCommand(
      STRANGLER_PROXY_BINARY, {"--config", path, "--check-config"}, std::chrono::seconds(10));
  EXPECT_EQ(result.exit_code, 0);
  EXPECT_NE(result.output.find("valid (2 routes, 2 upstreams)"), std::string::npos)
      << result.output;
  auto broken = config();
  broken["routes"][0]["percent"] = 150;
  broken["routes"][0]["stage"] = "canary";
  broken["surprise"] = true;
  std::ofstream(path) << broken.dump();
  result = strangler::testing::runCommand(
      STRANGLER_PROXY_BINARY, {"--config", path, "--check-config"}, std::chrono::seconds(10));
  EXPECT_EQ(result.exit_code, 1);
}

TEST_F(ProxyResilienceTest, AdminReportsRoutesAndMetrics) {
  ProxyProcess proxy(config());
  ASSERT_TRUE(proxy.running());
  ASSERT_EQ(proxy.get("/api/drivers/1").status, 200);
  ASSERT_EQ(proxy.get("/other").status, 200);
  const auto routes = proxy.admin("GET", "/routes").json();
  EXPECT_EQ(routes["version"], 1);
  EXPECT_EQ(routes["routes"][0]["name"], "drivers");
  EXPECT_EQ(routes["routes"][0]["stage"], "extracted");
  EXPECT_EQ(routes["routes"][0]["target"], "service");
  EXPECT_EQ(routes["routes"][0]["counters"]["requests"], 1);
  EXPECT_EQ(routes["routes"][0]["counters"]["to_target"], 1);
  const std::string metrics = proxy.admin("GET", "/metrics").body;
  EXPECT_NE(metrics.find("strangler_proxy_requests_total{route=\"drivers\",upstream=\"service\","
                         "status=\"200\"} 1"),
            std::string::npos)
      << metrics;
  EXPECT_NE(
      metrics.find(
          "strangler_proxy_requests_total{route=\"\",upstream=\"monolith\",status=\"200\"} 1"),
      std::string::npos);
  EXPECT_NE(metrics.find("strangler_proxy_request_duration_seconds_bucket{route=\"drivers\","
                         "upstream=\"service\",le=\"+Inf\"} 1"),
            std::string::npos);
  EXPECT_NE(metrics.find("strangler_proxy_circuit_state{upstream=\"service\"} 0"),
            std::string::npos);
  // The dashboard renders in the browser from /routes (its content is tested in Chromium).
  const auto page = proxy.admin("GET", "/");
  EXPECT_EQ(page.status, 200);
  EXPECT_NE(page.header("content-type").find("text/html"), std::string::npos);
  EXPECT_NE(page.body.find("/routes"), std::string::npos);
}

TEST_F(ProxyResilienceTest, GracefulStopFinishesRequestsInFlight) {
  ProxyProcess proxy(config());
  ASSERT_TRUE(proxy.running());
  service_.delay_ms = 700;
  std::atomic<int> status{0};
  std::thread client([&] {
    try {
      status = proxy.get("/api/strict/slow").status;
    } catch (const std::exception&) {
      status = -1;
    }
  });
  ASSERT_TRUE(waitFor([&] { return service_.count() > 0; }));  // in flight
  proxy.process().signal(SIGTERM);
  const auto code = proxy.process().wait(std::chrono::seconds(5));
  client.join();
  EXPECT_EQ(status.load(), 200);
  ASSERT_TRUE(code.has_value());
  EXPECT_EQ(*code, 0);
}

TEST_F(ProxyResilienceTest, RefusesBodiesOverTheLimit) {
  json cfg = config();
  cfg["limits"] = {{"max_body_bytes", 1024}};
  ProxyProcess proxy(cfg);
  ASSERT_TRUE(proxy.running());
  EXPECT_EQ(proxy.request("POST", "/api/drivers/1", std::string(2000, 'x')).status, 413);
  const std::string chunked = proxy.raw(
      "POST /api/drivers/1 HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n7d0\r\n" +
      std::string(2000, 'y') + "\r\n0\r\n\r\n");
  EXPECT_EQ(rawStatus(chunked), 413) << chunked.substr(0, 200);
  EXPECT_EQ(proxy.request("POST", "/api/drivers/1", std::string(1000, 'z')).status, 200);
  EXPECT_EQ(service_.count(), 1u);
}

TEST_F(ProxyResilienceTest, RoundRobinSkipsADeadEndpoint) {
  FakeUpstream second("service");
  const std::string dead = "127.0.0.1:" + std::to_string(strangler::testing::freeLoopbackPort());
  json cfg = config();
  cfg["upstreams"]["service"]["endpoints"] = {service_.address(), dead, second.address()};
  ProxyProcess proxy(cfg);
  ASSERT_TRUE(proxy.running());
  for (int i = 0; i < 30; ++i) {
    const auto response = proxy.request("POST", "/api/strict/" + std::to_string(i), "{}");
    EXPECT_EQ(response.status, 200) << "a refused connect is retried on the next endpoint";
  }
  EXPECT_GT(service_.count(), 5u);
  EXPECT_GT(second.count(), 5u);
  EXPECT_EQ(service_.count() + second.count(), 30u);
}

TEST_F(ProxyResilienceTest, WritesOneJsonAccessLogLinePerRequest) {
  strangler::testing::TempDir dir;
  const std::string log_path = dir.file("access.log");
  json cfg = config();
  cfg["access_log"] = log_path;
  {
    ProxyProcess proxy(cfg);
    ASSERT_TRUE(proxy.running());
    EXPECT_EQ(proxy.get("/api/drivers/1?x=2").status, 200);
    EXPECT_EQ(proxy.get("/nowhere").status, 200);
  }  // stopping flushes the log
  std::ifstream in(log_path);
  std::vector<json> lines;
  for (std::string line; std::getline(in, line);)
    lines.push_back(json::parse(line));
  ASSERT_EQ(lines.size(), 2u);
  EXPECT_EQ(lines[0]["target"], "/api/drivers/1?x=2");
  EXPECT_EQ(lines[0]["route"], "drivers");
  EXPECT_EQ(lines[0]["upstream"], "service");
  EXPECT_EQ(lines[0]["status"], 200);
  EXPECT_TRUE(lines[1]["route"].is_null());
  EXPECT_EQ(lines[1]["upstream"], "monolith");
}

TEST_F(ProxyResilienceTest, ServesHttp10Clients) {
  ProxyProcess proxy(config());
  ASSERT_TRUE(proxy.running());
  service_.chunked = true;  // re-framed for a client that cannot read chunked: read to the close
  const std::string answer = proxy.raw("GET /api/drivers/1 HTTP/1.0\r\n\r\n");
  EXPECT_EQ(rawStatus(answer), 200) << answer;
  EXPECT_EQ(answer.find("Transfer-Encoding"), std::string::npos) << answer;
  EXPECT_NE(answer.find("Connection: close"), std::string::npos) << answer;
  EXPECT_NE(answer.find("\"uri\":\"/api/drivers/1\""), std::string::npos) << answer;
}

TEST_F(ProxyResilienceTest, SurvivesRandomBytes) {
  ProxyProcess proxy(config());
  ASSERT_TRUE(proxy.running());
  std::mt19937 random(12345);
  const std::string pieces[] = {"GET ",
                                "POST ",
                                "/api/drivers/",
                                "%2e",
                                "%",
                                "..",
                                "/",
                                " HTTP/1.1\r\n",
                                "Host: a\r\n",
                                "Content-Length: 5\r\n",
                                "Transfer-Encoding: chunked\r\n",
                                "\r\n",
                                "\n",
                                "\0",
                                "0\r\n\r\n",
                                "zz",
                                ":",
                                "\xff",
                                "5\r\nhello\r\n"};
  for (int round = 0; round < 60; ++round) {
    std::string bytes;
    const int count = 1 + static_cast<int>(random() % 12);
    for (int i = 0; i < count; ++i)
      bytes += pieces[random() % std::size(pieces)];
    if (random() % 3 == 0) bytes += std::string(random() % 2000, static_cast<char>(random() % 256));
    const std::string answer = proxy.raw(bytes);
    if (!answer.empty()) {
      EXPECT_EQ(answer.compare(0, 5, "HTTP/"), 0) << answer.substr(0, 80);
    }
  }
  EXPECT_EQ(proxy.get("/api/drivers/1").status, 200) << "still serving after the noise";
  EXPECT_EQ(proxy.admin("GET", "/healthz").status, 200);
}

}  // namespace
}  // namespace strangler::proxy::testing
