// Integration: the write hold of a fenced cutover (POST/GET/DELETE /routes/NAME/hold) and
// routes that carry data, with the real strangler-proxy binary and fake upstreams on loopback.
#include <Poco/Net/SocketAddress.h>
#include <Poco/Net/StreamSocket.h>
#include <gtest/gtest.h>

#include <future>
#include <thread>

#include "proxy_harness.h"

namespace strangler::proxy::testing {
namespace {

using nlohmann::json;
using std::chrono::milliseconds;
using strangler::testing::HttpResponse;
using Clock = std::chrono::steady_clock;

const strangler::testing::ChildProcess::Env kTokenEnv = {
    {"STRANGLER_TEST_ADMIN_TOKEN", "test-token"}};
const std::map<std::string, std::string> kAuth = {{"Authorization", "Bearer test-token"}};

int64_t msSince(Clock::time_point start) {
  return std::chrono::duration_cast<milliseconds>(Clock::now() - start).count();
}

// The requests of `method` an upstream received whose URI starts with `prefix`.
size_t received(const FakeUpstream& upstream, const std::string& method,
                const std::string& prefix) {
  size_t count = 0;
  for (const auto& request : upstream.requests())
    count += request.method == method && request.uri.compare(0, prefix.size(), prefix) == 0;
  return count;
}

// A request through the proxy on its own thread; a transport failure becomes status 0.
std::future<HttpResponse> sendAsync(ProxyProcess& proxy, const std::string& method,
                                    const std::string& target, const std::string& body = "") {
  return std::async(std::launch::async, [&proxy, method, target, body] {
    try {
      return proxy.request(method, target, body);
    } catch (const std::exception& error) {
      HttpResponse failed;
      failed.body = error.what();
      return failed;
    }
  });
}

class HoldTest : public ::testing::Test {
 protected:
  FakeUpstream monolith_{"monolith"};
  FakeUpstream service_{"service"};

  // "drivers" carries data (canary 50); "trips" does not.
  json config(int cutover_hold_ms, const std::string& drivers_stage = "canary") {
    json config = baseConfig(monolith_);
    addUpstream(config, service_);
    config["cutover"] = {{"hold_ms", cutover_hold_ms}};
    json drivers = {{"name", "drivers"},
                    {"match", {{"path", "/api/drivers/**"}}},
                    {"target", "service"},
                    {"stage", drivers_stage},
                    {"data", "drivers"}};
    if (drivers_stage == "canary") drivers["percent"] = 50;
    config["routes"] = json::array({drivers,
                                    {{"name", "trips"},
                                     {"match", {{"path", "/api/trips/**"}}},
                                     {"target", "service"},
                                     {"stage", "monolith"}}});
    return config;
  }

  HttpResponse admin(ProxyProcess& proxy, const std::string& method, const std::string& target,
                     const std::string& body = "",
                     const std::map<std::string, std::string>& headers = kAuth) {
    return strangler::testing::httpRequest("127.0.0.1", proxy.adminPort(), method, target, body,
                                           headers, std::chrono::seconds(10));
  }

  json holdStatus(ProxyProcess& proxy, const std::string& route = "drivers") {
    const auto response = proxy.admin("GET", "/routes/" + route + "/hold");
    EXPECT_EQ(response.status, 200) << response.body;
    return response.json();
  }
};

TEST_F(HoldTest, HeldWritesWaitThroughAReloadAndGoToTheNewOwnerOnRelease) {
  ProxyProcess proxy(config(10000), kTokenEnv);
  ASSERT_TRUE(proxy.running());

  auto held = admin(proxy, "POST", "/routes/drivers/hold", R"({"hold_ms": 10000})");
  ASSERT_EQ(held.status, 200) << held.body;
  EXPECT_EQ(held.json()["route"], "drivers");
  EXPECT_EQ(held.json()["held"], true);
  EXPECT_EQ(held.json()["expires_in_ms"], 10000);
  EXPECT_EQ(held.json()["in_flight_unsafe"], 0);

  constexpr int kWrites = 5;
  std::vector<std::future<HttpResponse>> writes;
  for (int i = 0; i < kWrites; ++i) {
    writes.push_back(sendAsync(proxy, "PUT", "/api/drivers/" + std::to_string(i),
                               R"({"name": "driver )" + std::to_string(i) + R"("})"));
  }
  ASSERT_TRUE(waitFor([&] { return holdStatus(proxy)["waiting"] == kWrites; }))
      << holdStatus(proxy).dump();

  // Reads on the held route and writes on other routes go through meanwhile.
  const auto read = proxy.get("/api/drivers/1");
  EXPECT_EQ(read.status, 200);
  EXPECT_EQ(read.json()["method"], "GET");
  const auto other = proxy.request("PUT", "/api/trips/1", R"({"fare": 12})");
  EXPECT_EQ(other.status, 200);
  EXPECT_EQ(other.json()["upstream"], "monolith");

  // The cutover switches the route while the hold is on: the hold survives the reload.
  proxy.writeConfig(config(10000, "extracted"));
  const auto reloaded = proxy.admin("POST", "/reload", kAuth);
  ASSERT_EQ(reloaded.status, 200) << reloaded.body;
  std::this_thread::sleep_for(milliseconds(200));
  const auto during = holdStatus(proxy);
  EXPECT_EQ(during["held"], true);
  EXPECT_EQ(during["waiting"], kWrites);
  EXPECT_EQ(received(monolith_, "PUT", "/api/drivers/"), 0u);
  EXPECT_EQ(received(service_, "PUT", "/api/drivers/"), 0u);

  const auto released = admin(proxy, "DELETE", "/routes/drivers/hold");
  ASSERT_EQ(released.status, 200) << released.body;
  EXPECT_EQ(released.json()["route"], "drivers");
  EXPECT_EQ(released.json()["released"], kWrites);
  EXPECT_GE(released.json()["max_held_ms"].get<int64_t>(), 200);

  for (int i = 0; i < kWrites; ++i) {
    const auto answer = writes[static_cast<size_t>(i)].get();
    ASSERT_EQ(answer.status, 200) << answer.body;
    EXPECT_EQ(answer.json()["upstream"], "service");
    EXPECT_EQ(answer.json()["uri"], "/api/drivers/" + std::to_string(i));
    EXPECT_EQ(answer.json()["body"], R"({"name": "driver )" + std::to_string(i) + R"("})");
  }
  EXPECT_EQ(received(monolith_, "PUT", "/api/drivers/"), 0u);
  EXPECT_EQ(received(service_, "PUT", "/api/drivers/"), static_cast<size_t>(kWrites));
  const auto after = holdStatus(proxy);
  EXPECT_EQ(after["held"], false);
  EXPECT_EQ(after["waiting"], 0);
  EXPECT_EQ(after["in_flight_unsafe"], 0);

  const std::string metrics = proxy.admin("GET", "/metrics").body;
  EXPECT_NE(metrics.find("strangler_held_requests_total{route=\"drivers\"} 5\n"), std::string::npos)
      << metrics;
  EXPECT_NE(metrics.find("strangler_held_requests_total{route=\"trips\"} 0\n"), std::string::npos);
  EXPECT_NE(metrics.find("strangler_hold_timeouts_total{route=\"drivers\"} 0\n"),
            std::string::npos);
}

// Reads from `client` until `done(answer)` or the socket's receive timeout.
template <typename Done>
std::string receiveUntil(Poco::Net::StreamSocket& client, Done done) {
  std::string answer;
  char buffer[4096];
  while (!done(answer)) {
    const int n = client.receiveBytes(buffer, sizeof buffer);
    if (n <= 0) break;
    answer.append(buffer, static_cast<size_t>(n));
  }
  return answer;
}

TEST_F(HoldTest, AParkedRequestsBodyIsNeitherAskedForNorForwardedUntilRelease) {
  ProxyProcess proxy(config(10000, "monolith"), kTokenEnv);
  ASSERT_TRUE(proxy.running());
  ASSERT_EQ(admin(proxy, "POST", "/routes/drivers/hold", R"({"hold_ms": 10000})").status, 200);
  const Poco::Net::SocketAddress address("127.0.0.1", proxy.port());

  // One client asks before sending its body: it is not asked for it ("100 Continue").
  Poco::Net::StreamSocket asking(address);
  asking.setReceiveTimeout(Poco::Timespan(5, 0));
  const std::string head =
      "PUT /api/drivers/5 HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\n"
      "Content-Length: 13\r\nExpect: 100-continue\r\n\r\n";
  asking.sendBytes(head.data(), static_cast<int>(head.size()));
  ASSERT_TRUE(waitFor([&] { return holdStatus(proxy)["waiting"] == 1; }));
  EXPECT_FALSE(asking.poll(Poco::Timespan(0, 200000), Poco::Net::Socket::SELECT_READ));
  // ... and when it sends the body anyway (after its own wait), it is still held.
  const std::string body = R"({"late":true})";
  asking.sendBytes(body.data(), static_cast<int>(body.size()));

  // Another sends head and body at once, then a pipelined read: buffered bytes and new events
  // on a parked connection do not push the held request through.
  Poco::Net::StreamSocket eager(address);
  eager.setReceiveTimeout(Poco::Timespan(5, 0));
  const std::string request =
      "PUT /api/drivers/6 HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\n"
      "Content-Length: 13\r\n\r\n" +
      body;
  eager.sendBytes(request.data(), static_cast<int>(request.size()));
  ASSERT_TRUE(waitFor([&] { return holdStatus(proxy)["waiting"] == 2; }));
  const std::string pipelined = "GET /api/trips/1 HTTP/1.1\r\nHost: test\r\n\r\n";
  eager.sendBytes(pipelined.data(), static_cast<int>(pipelined.size()));
  std::this_thread::sleep_for(milliseconds(300));
  EXPECT_EQ(monolith_.count(), 0u);
  EXPECT_EQ(holdStatus(proxy)["waiting"], 2);

  ASSERT_EQ(admin(proxy, "DELETE", "/routes/drivers/hold").json()["released"], 2);
  const auto one_answer = [](const std::string& answer) {
    return answer.find("\"upstream\"") != std::string::npos && answer.back() == '}';
  };
  const std::string asked = receiveUntil(asking, one_answer);
  EXPECT_NE(asked.find("HTTP/1.1 200 OK"), std::string::npos) << asked;
  EXPECT_NE(asked.find("/api/drivers/5"), std::string::npos) << asked;
  const std::string both = receiveUntil(eager, [](const std::string& answer) {
    return answer.find("/api/trips/1") != std::string::npos && answer.back() == '}';
  });
  const size_t put = both.find("/api/drivers/6");
  const size_t get = both.find("/api/trips/1");
  EXPECT_NE(put, std::string::npos) << both;
  EXPECT_NE(get, std::string::npos) << both;
  EXPECT_LT(put, get) << both;  // pipelined answers in order
  EXPECT_EQ(received(monolith_, "PUT", "/api/drivers/"), 2u);
  for (const auto& seen : monolith_.requests()) {
    if (seen.method == "PUT") {
      EXPECT_EQ(seen.body, body);
    }
  }
}

TEST_F(HoldTest, AnExpiredHoldLetsItsParkedRequestsGo) {
  ProxyProcess proxy(config(10000, "monolith"), kTokenEnv);
  ASSERT_TRUE(proxy.running());
  ASSERT_EQ(admin(proxy, "POST", "/routes/drivers/hold", R"({"hold_ms": 600})").status, 200);
  const auto start = Clock::now();
  auto write = sendAsync(proxy, "DELETE", "/api/drivers/3");
  auto post = sendAsync(proxy, "POST", "/api/drivers", R"({"name": "new"})");
  ASSERT_TRUE(waitFor([&] { return holdStatus(proxy)["waiting"] == 2; }));
  EXPECT_EQ(monolith_.count(), 0u);

  const auto deleted = write.get();
  const auto elapsed = msSince(start);
  EXPECT_EQ(deleted.status, 200) << deleted.body;
  EXPECT_EQ(deleted.json()["method"], "DELETE");
  EXPECT_EQ(post.get().status, 200);
  EXPECT_GE(elapsed, 500);
  EXPECT_LT(elapsed, 5000);  // released at expiry, long before cutover.hold_ms (10 s)
  EXPECT_EQ(received(monolith_, "DELETE", "/api/drivers/3"), 1u);
  const auto after = holdStatus(proxy);
  EXPECT_EQ(after["held"], false);
  EXPECT_EQ(after["waiting"], 0);
  EXPECT_EQ(after["expires_in_ms"], 0);
}

TEST_F(HoldTest, AParkedRequestGets503WithRetryAfterOnceItWaitedCutoverHoldMs) {
  ProxyProcess proxy(config(300, "monolith"), kTokenEnv);
  ASSERT_TRUE(proxy.running());
  ASSERT_EQ(admin(proxy, "POST", "/routes/drivers/hold", R"({"hold_ms": 20000})").status, 200);

  const auto start = Clock::now();
  const auto answer = proxy.request("PUT", "/api/drivers/9", R"({"name": "late"})");
  const auto elapsed = msSince(start);
  EXPECT_EQ(answer.status, 503) << answer.body;
  EXPECT_EQ(answer.header("retry-after"), "1");
  EXPECT_EQ(answer.json()["error"], "route_held");
  EXPECT_GE(elapsed, 290);
  EXPECT_LT(elapsed, 2000);
  EXPECT_EQ(monolith_.count(), 0u);
  EXPECT_EQ(holdStatus(proxy)["held"], true);  // the hold itself goes on
  EXPECT_EQ(holdStatus(proxy)["waiting"], 0);

  const std::string metrics = proxy.admin("GET", "/metrics").body;
  EXPECT_NE(metrics.find("strangler_hold_timeouts_total{route=\"drivers\"} 1\n"), std::string::npos)
      << metrics;
  EXPECT_NE(metrics.find("strangler_held_requests_total{route=\"drivers\"} 1\n"),
            std::string::npos);

  const auto released = admin(proxy, "DELETE", "/routes/drivers/hold");
  ASSERT_EQ(released.status, 200);
  EXPECT_EQ(released.json()["released"], 0);
  EXPECT_GE(released.json()["max_held_ms"].get<int64_t>(), 290);
  // Released: writes flow again.
  EXPECT_EQ(proxy.request("PUT", "/api/drivers/9", "{}").status, 200);
  EXPECT_EQ(received(monolith_, "PUT", "/api/drivers/9"), 1u);
}

TEST_F(HoldTest, InFlightUnsafeCountsWritesForwardedAndNotYetAnswered) {
  ProxyProcess proxy(config(2000, "monolith"), kTokenEnv);
  ASSERT_TRUE(proxy.running());
  monolith_.delay_ms = 1000;
  auto slow_write = sendAsync(proxy, "PUT", "/api/drivers/1", R"({"name": "slow"})");
  auto slow_read = sendAsync(proxy, "GET", "/api/drivers/2");
  auto other_route = sendAsync(proxy, "PUT", "/api/trips/1", "{}");
  ASSERT_TRUE(waitFor([&] { return monolith_.count() == 3; }));

  const auto held = admin(proxy, "POST", "/routes/drivers/hold", R"({"hold_ms": 5000})");
  ASSERT_EQ(held.status, 200) << held.body;
  EXPECT_EQ(held.json()["in_flight_unsafe"], 1);  // the PUT; not the GET, not the other route
  EXPECT_EQ(holdStatus(proxy)["in_flight_unsafe"], 1);
  EXPECT_EQ(holdStatus(proxy, "trips")["in_flight_unsafe"], 1);

  EXPECT_EQ(slow_write.get().status, 200);  // admitted before the hold: it finishes
  EXPECT_EQ(slow_read.get().status, 200);
  EXPECT_EQ(other_route.get().status, 200);
  EXPECT_TRUE(waitFor([&] { return holdStatus(proxy)["in_flight_unsafe"] == 0; }))
      << holdStatus(proxy).dump();
  EXPECT_EQ(holdStatus(proxy)["held"], true);
  EXPECT_EQ(admin(proxy, "DELETE", "/routes/drivers/hold").status, 200);
}

TEST_F(HoldTest, TheAdminApiChecksTokensRoutesAndBodies) {
  ProxyProcess proxy(config(2000), kTokenEnv);
  ASSERT_TRUE(proxy.running());

  EXPECT_EQ(admin(proxy, "POST", "/routes/drivers/hold", "", {}).status, 401);
  EXPECT_EQ(admin(proxy, "DELETE", "/routes/drivers/hold", "", {}).status, 401);
  EXPECT_EQ(admin(proxy, "POST", "/routes/nowhere/hold", R"({"hold_ms": 100})").status, 404);
  EXPECT_EQ(proxy.admin("GET", "/routes/nowhere/hold").status, 404);
  EXPECT_EQ(admin(proxy, "DELETE", "/routes/nowhere/hold").status, 404);
  EXPECT_EQ(admin(proxy, "PUT", "/routes/drivers/hold", "{}").status, 405);
  for (const char* bad :
       {"not json", "[1]", R"({"hold_ms": 0})", R"({"hold_ms": 60001})", R"({"hold_ms": "100"})",
        R"({"hold_ms": 1.5})", R"({"hold_ms": 100, "force": true})"}) {
    const auto answer = admin(proxy, "POST", "/routes/drivers/hold", bad);
    EXPECT_EQ(answer.status, 400) << bad << ": " << answer.body;
  }
  EXPECT_EQ(holdStatus(proxy)["held"], false);  // nothing was held by the refused requests

  // Not held: releasing is harmless.
  auto released = admin(proxy, "DELETE", "/routes/drivers/hold");
  ASSERT_EQ(released.status, 200);
  EXPECT_EQ(released.json()["released"], 0);
  EXPECT_EQ(released.json()["max_held_ms"], 0);

  // No body: 5000 ms. Holding again refreshes the expiry.
  auto held = admin(proxy, "POST", "/routes/drivers/hold");
  ASSERT_EQ(held.status, 200) << held.body;
  EXPECT_EQ(held.json()["expires_in_ms"], 5000);
  held = admin(proxy, "POST", "/routes/drivers/hold", R"({"hold_ms": 30000})");
  ASSERT_EQ(held.status, 200);
  EXPECT_EQ(held.json()["expires_in_ms"], 30000);
  const auto status = holdStatus(proxy);
  EXPECT_EQ(status["held"], true);
  EXPECT_GT(status["expires_in_ms"].get<int64_t>(), 25000);
  EXPECT_EQ(status["waiting"], 0);
  EXPECT_EQ(holdStatus(proxy, "trips")["held"], false);

  const auto routes = proxy.admin("GET", "/routes").json()["routes"];
  ASSERT_EQ(routes.size(), 2u);
  EXPECT_EQ(routes[0]["data"], "drivers");
  EXPECT_EQ(routes[0]["held"], true);
  EXPECT_TRUE(routes[1]["data"].is_null());
  EXPECT_EQ(routes[1]["held"], false);
  EXPECT_EQ(admin(proxy, "DELETE", "/routes/drivers/hold").status, 200);
  EXPECT_EQ(holdStatus(proxy)["held"], false);
}

TEST_F(HoldTest, ACanaryDataRouteSplitsReadsAndSendsWritesToTheMonolith) {
  ProxyProcess proxy(config(2000), kTokenEnv);
  ASSERT_TRUE(proxy.running());
  for (int i = 0; i < 40; ++i) {
    ASSERT_EQ(proxy.get("/api/drivers/" + std::to_string(i)).status, 200);
    ASSERT_EQ(proxy.request("PUT", "/api/drivers/" + std::to_string(i), "{}").status, 200);
  }
  EXPECT_EQ(received(service_, "PUT", "/api/drivers/"), 0u);
  EXPECT_EQ(received(monolith_, "PUT", "/api/drivers/"), 40u);
  // 40 reads at 50 %: both sides get some (all on one side: about 2e-12).
  EXPECT_GT(received(service_, "GET", "/api/drivers/"), 0u);
  EXPECT_GT(received(monolith_, "GET", "/api/drivers/"), 0u);
}

}  // namespace
}  // namespace strangler::proxy::testing
