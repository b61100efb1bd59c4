// Integration: the real strangler-proxy binary in front of fake upstreams on loopback.
#include <Poco/Net/SocketAddress.h>
#include <Poco/Net/StreamSocket.h>
#include <gtest/gtest.h>

#include <set>
#include <thread>

#include "proxy_harness.h"

namespace strangler::proxy::testing {
namespace {

using nlohmann::json;

class ProxyRoutingTest : public ::testing::Test {
 protected:
  FakeUpstream monolith_{"monolith"};
  FakeUpstream service_{"service"};

  json config() {
    json config = baseConfig(monolith_);
    addUpstream(config, service_);
    config["routes"] = json::array(
        {{{"name", "legacy"},
          {"match", {{"path", "/api/legacy/**"}}},
          {"target", "service"},
          {"stage", "monolith"}},
         {{"name", "shadowed"},
          {"match", {{"path", "/api/shadowed"}}},
          {"target", "service"},
          {"stage", "shadow"}},
         {{"name", "moved"},
          {"match", {{"path", "/api/moved/{id}"}, {"methods", {"GET", "POST", "HEAD"}}}},
          {"target", "service"},
          {"stage", "extracted"},
          {"rewrite", {{"prefix", "/api/moved"}, {"to", "/v2/moved"}}}},
         {{"name", "public"},
          {"match", {{"path", "/api/public/**"}}},
          {"target", "service"},
          {"stage", "extracted"}},
         {{"name", "canary"},
          {"match", {{"path", "/api/canary/**"}}},
          {"target", "service"},
          {"stage", "canary"},
          {"percent", 50},
          {"sticky", {{"header", "X-User-Id"}}}}});
    return config;
  }
};

TEST_F(ProxyRoutingTest, RoutesEachStageToItsUpstream) {
  ProxyProcess proxy(config());
  ASSERT_TRUE(proxy.running());

  auto response = proxy.get("/api/legacy/1");
  EXPECT_EQ(response.status, 200);
  EXPECT_EQ(response.json()["upstream"], "monolith");
  EXPECT_EQ(response.header("x-strangler-route"), "legacy");
  EXPECT_EQ(response.header("x-strangler-upstream"), "monolith");

  response = proxy.get("/api/shadowed");
  EXPECT_EQ(response.json()["upstream"], "monolith");

  response = proxy.get("/api/moved/7?x=1");
  EXPECT_EQ(response.json()["upstream"], "service");
  EXPECT_EQ(response.json()["uri"], "/v2/moved/7?x=1");
  EXPECT_EQ(response.header("x-strangler-route"), "moved");

  response = proxy.request("DELETE", "/api/moved/7");  // method not routed: default upstream
  EXPECT_EQ(response.json()["upstream"], "monolith");
  EXPECT_EQ(response.header("x-strangler-route"), "-");

  response = proxy.get("/elsewhere");
  EXPECT_EQ(response.json()["upstream"], "monolith");
}

TEST_F(ProxyRoutingTest, StickyCanaryKeepsEachUserOnOneSide) {
  ProxyProcess proxy(config());
  ASSERT_TRUE(proxy.running());
  std::set<std::string> sides;
  for (int user = 0; user < 20; ++user) {
    const std::map<std::string, std::string> headers = {
        {"X-User-Id", "user-" + std::to_string(user)}};
    const std::string first = proxy.get("/api/canary/a", headers).json()["upstream"];
    sides.insert(first);
    for (int i = 0; i < 3; ++i) {
      EXPECT_EQ(proxy.get("/api/canary/b" + std::to_string(i), headers).json()["upstream"], first)
          << user;
    }
  }
  EXPECT_EQ(sides.size(), 2u) << "20 users at 50% should land on both sides";
}

TEST_F(ProxyRoutingTest, PassesChunkedRequestBodiesThrough) {
  ProxyProcess proxy(config());
  ASSERT_TRUE(proxy.running());
  const std::string answer = proxy.raw(
      "POST /api/moved/3 HTTP/1.1\r\nHost: test\r\nTransfer-Encoding: chunked\r\nConnection: "
      "close\r\n\r\n"
      "5\r\nhello\r\n7\r\n, world\r\n0\r\n\r\n");
  EXPECT_EQ(rawStatus(answer), 200) << answer;
  ASSERT_EQ(service_.count(), 1u);
  const auto received = service_.requests()[0];
  EXPECT_EQ(received.body, "hello, world");
  // Streamed as it arrives, so forwarded chunked (its length is not known up front).
  EXPECT_EQ(received.header("transfer-encoding"), "chunked");
  EXPECT_FALSE(received.has("content-length"));
}

TEST_F(ProxyRoutingTest, PassesContentLengthBodiesAndLargeResponses) {
  ProxyProcess proxy(config());
  ASSERT_TRUE(proxy.running());
  service_.padding = 3 * 1024 * 1024;
  const std::string body(200000, 'b');
  auto response = proxy.request("POST", "/api/moved/4", body);
  EXPECT_EQ(response.status, 200);
  EXPECT_EQ(response.json()["body"], body);
  EXPECT_EQ(response.json()["padding"].get<std::string>().size(), 3u * 1024 * 1024);
  service_.chunked = true;
  response = proxy.get("/api/moved/5");
  EXPECT_EQ(response.status, 200);
  EXPECT_EQ(response.json()["padding"].get<std::string>().size(), 3u * 1024 * 1024);
}

TEST_F(ProxyRoutingTest, AnswersExpectContinueItself) {
  ProxyProcess proxy(config());
  ASSERT_TRUE(proxy.running());
  // The client waits for the interim answer before sending its body.
  Poco::Net::StreamSocket socket;
  socket.connect(Poco::Net::SocketAddress("127.0.0.1", proxy.port()), Poco::Timespan(5, 0));
  socket.setReceiveTimeout(Poco::Timespan(5, 0));
  const std::string head =
      "POST /api/moved/1 HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\nExpect: 100-continue\r\n"
      "Connection: close\r\n\r\n";
  socket.sendBytes(head.data(), static_cast<int>(head.size()));
  char buffer[4096];
  const int n = socket.receiveBytes(buffer, sizeof buffer);
  ASSERT_GT(n, 0);
  EXPECT_EQ(std::string(buffer, static_cast<size_t>(n)), "HTTP/1.1 100 Continue\r\n\r\n");
  socket.sendBytes("hello", 5);
  std::string answer;
  for (int got; (got = socket.receiveBytes(buffer, sizeof buffer)) > 0;)
    answer.append(buffer, static_cast<size_t>(got));
  EXPECT_EQ(rawStatus(answer), 200) << answer;
  ASSERT_EQ(service_.count(), 1u);
  EXPECT_EQ(service_.requests()[0].body, "hello");
  EXPECT_FALSE(service_.requests()[0].has("expect"));
}

TEST_F(ProxyRoutingTest, AnswersHeadWithoutABody) {
  ProxyProcess proxy(config());
  ASSERT_TRUE(proxy.running());
  const std::string answer = proxy.raw(
      "HEAD /api/moved/5 HTTP/1.1\r\nHost: t\r\n\r\nGET /api/moved/6 HTTP/1.1\r\nHost: "
      "t\r\nConnection: close\r\n\r\n");
  EXPECT_EQ(rawStatus(answer), 200);
  // The HEAD answer carries no body, so the second (pipelined) response follows right after.
  const size_t second = answer.find("HTTP/1.1 200", 5);
  ASSERT_NE(second, std::string::npos) << answer;
  EXPECT_EQ(answer.substr(answer.find("\r\n\r\n") + 4, 8), "HTTP/1.1");
  EXPECT_NE(answer.find("/v2/moved/6", second), std::string::npos);
}

TEST_F(ProxyRoutingTest, StripsHopByHopAndClientStranglerHeaders) {
  ProxyProcess proxy(config());
  ASSERT_TRUE(proxy.running());
  const std::string answer = proxy.raw(
      "GET /api/moved/1 HTTP/1.1\r\nHost: t\r\nConnection: X-Private-Hop, close\r\n"
      "X-Private-Hop: secret\r\nKeep-Alive: timeout=5\r\nTE: deflate, trailers\r\n"
      "Proxy-Connection: keep-alive\r\nX-Strangler-Route: spoofed\r\nx-strangler-shadow: 1\r\n"
      "X-End-To-End: kept\r\n\r\n");
  ASSERT_EQ(rawStatus(answer), 200) << answer;
  ASSERT_EQ(service_.count(), 1u);
  const auto received = service_.requests()[0];
  for (const char* name : {"x-private-hop", "keep-alive", "proxy-connection", "x-strangler-route",
                           "x-strangler-shadow"}) {
    EXPECT_FALSE(received.has(name)) << name << " reached the upstream";
  }
  // TE is the proxy's own: "trailers" (it relays them), never the client's codings.
  EXPECT_EQ(received.header("te"), "trailers");
  EXPECT_EQ(received.header("x-end-to-end"), "kept");
  EXPECT_EQ(answer.find("Upgrade:"), std::string::npos) << "hop-by-hop response header relayed";
  EXPECT_NE(answer.find("X-Strangler-Route: moved\r\n"), std::string::npos);
  EXPECT_EQ(answer.find("spoofed-by-upstream"), std::string::npos);
}

TEST_F(ProxyRoutingTest, ReplacesForwardingHeadersFromAnUntrustedPeer) {
  ProxyProcess proxy(config());  // no trusted_proxies: nobody may say who the client was
  ASSERT_TRUE(proxy.running());
  const auto response = proxy.get("/api/moved/1", {{"X-Forwarded-For", "203.0.113.9"},
                                                   {"X-Forwarded-Proto", "https"},
                                                   {"X-Forwarded-Host", "bank.example"},
                                                   {"Forwarded", "for=203.0.113.9"},
                                                   {"Via", "1.0 edge"},
                                                   {"Host", "shop.example:8443"}});
  ASSERT_EQ(response.status, 200);
  const auto received = service_.requests().at(0);
  EXPECT_EQ(received.header("x-forwarded-for"), "127.0.0.1");
  EXPECT_EQ(received.header("x-forwarded-proto"), "http");
  EXPECT_EQ(received.header("x-forwarded-host"), "shop.example:8443");
  EXPECT_EQ(received.header("forwarded"), "for=127.0.0.1;proto=http;host=\"shop.example:8443\"");
  EXPECT_EQ(received.headers.count("x-forwarded-for"), 1u);
  EXPECT_EQ(received.headers.count("forwarded"), 1u);
  EXPECT_EQ(received.header("host"), "shop.example:8443");
  EXPECT_EQ(received.header("via"), "1.0 edge, 1.1 strangler");
}

TEST_F(ProxyRoutingTest, ExtendsForwardingHeadersFromATrustedProxy) {
  json cfg = config();
  cfg["trusted_proxies"] = {"10.0.0.0/8", "127.0.0.0/8"};
  ProxyProcess proxy(cfg);
  ASSERT_TRUE(proxy.running());
  const auto response = proxy.get("/api/moved/1", {{"X-Forwarded-For", "203.0.113.9"},
                                                   {"X-Forwarded-Proto", "https"},
                                                   {"Forwarded", "for=203.0.113.9;proto=https"},
                                                   {"Host", "shop.example"}});
  ASSERT_EQ(response.status, 200);
  const auto received = service_.requests().at(0);
  EXPECT_EQ(received.header("x-forwarded-for"), "203.0.113.9, 127.0.0.1");
  EXPECT_EQ(received.header("x-forwarded-proto"), "https") << "the edge that terminated TLS knows";
  EXPECT_EQ(received.header("forwarded"),
            "for=203.0.113.9;proto=https, for=127.0.0.1;proto=http;host=\"shop.example\"");
}

TEST_F(ProxyRoutingTest, RejectsMalformedRequests) {
  ProxyProcess proxy(config());
  ASSERT_TRUE(proxy.running());
  EXPECT_EQ(rawStatus(proxy.raw("GARBAGE\r\n\r\n")), 400);
  EXPECT_EQ(rawStatus(proxy.raw("GET / HTTP/1.1\r\nHost: a\r\nBad Header: x\r\n\r\n")), 400);
  EXPECT_EQ(rawStatus(proxy.raw("GET / HTTP/1.1\r\n\r\n")), 400) << "HTTP/1.1 needs a Host";
  EXPECT_EQ(rawStatus(proxy.raw("GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n")), 400);
  EXPECT_EQ(rawStatus(proxy.raw("GET / HTTP/1.1\r\nHost: a\r\nX-Big: " + std::string(70000, 'a') +
                                "\r\n\r\n")),
            431);
  EXPECT_EQ(monolith_.count() + service_.count(), 0u);
}

TEST_F(ProxyRoutingTest, RejectsSmugglingAttempts) {
  ProxyProcess proxy(config());
  ASSERT_TRUE(proxy.running());
  // CL + TE: the classic desync. Refused outright, nothing forwarded.
  std::string answer = proxy.raw(
      "POST /api/moved/1 HTTP/1.1\r\nHost: a\r\nContent-Length: 6\r\nTransfer-Encoding: "
      "chunked\r\n\r\n"
      "0\r\n\r\nGET /api/moved/2 HTTP/1.1\r\nHost: a\r\n\r\n");
  EXPECT_EQ(rawStatus(answer), 400) << answer;
  EXPECT_EQ(answer.find("HTTP/1.1 200"), std::string::npos);
  answer = proxy.raw(
      "POST /api/moved/1 HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nContent-Length: "
      "30\r\n\r\nabc");
  EXPECT_EQ(rawStatus(answer), 400);
  answer = proxy.raw(
      "POST /api/moved/1 HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked, "
      "identity\r\n\r\n");
  EXPECT_EQ(rawStatus(answer), 400);
  EXPECT_EQ(service_.count() + monolith_.count(), 0u);
}

TEST_F(ProxyRoutingTest, NoPathSpellingReachesTheWrongRoute) {
  ProxyProcess proxy(config());
  ASSERT_TRUE(proxy.running());
  struct Case {
    const char* target;
    int status;
    const char* upstream;
    const char* route;
    const char* uri;  // what the upstream must receive
  };
  const Case cases[] = {
      {"/api/public/%2e%2e/legacy/x", 200, "monolith", "legacy", "/api/legacy/x"},
      {"/api/public/..%2flegacy/x", 400, "", "", ""},
      {"/api/public%2f..%2flegacy", 400, "", "", ""},
      {"//api//public///x", 200, "service", "public", "/api/public/x"},
      {"/api/./public/./x", 200, "service", "public", "/api/public/x"},
      {"/api/%70ublic/x", 200, "service", "public", "/api/public/x"},
      {"/api/legacy/../public/y", 200, "service", "public", "/api/public/y"},
      {"/api/public/%252e%252e/legacy", 400, "", "", ""},
      {"/api/public\\..\\legacy", 400, "", "", ""},
      {"/../api/public/x", 400, "", "", ""},
  };
  for (const auto& c : cases) {
    monolith_.clear();
    service_.clear();
    const std::string answer = proxy.raw("GET " + std::string(c.target) +
                                         " HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
    EXPECT_EQ(rawStatus(answer), c.status) << c.target << "\n" << answer;
    if (c.status != 200) {
      EXPECT_EQ(monolith_.count() + service_.count(), 0u) << c.target;
      continue;
    }
    EXPECT_NE(answer.find(std::string("X-Strangler-Route: ") + c.route), std::string::npos)
        << c.target;
    auto& upstream = std::string(c.upstream) == "service" ? service_ : monolith_;
    ASSERT_EQ(upstream.count(), 1u) << c.target;
    EXPECT_EQ(upstream.requests()[0].uri, c.uri) << c.target;
  }
}

TEST_F(ProxyRoutingTest, SlowAndVanishingClientsDoNotDisturbOthers) {
  ProxyProcess proxy(config());
  ASSERT_TRUE(proxy.running());
  service_.padding = 4 * 1024 * 1024;  // far more than the proxy buffers per connection
  const std::string request = "GET /api/moved/1 HTTP/1.1\r\nHost: t\r\n\r\n";
  auto open = [&] {
    Poco::Net::StreamSocket socket;
    socket.connect(Poco::Net::SocketAddress("127.0.0.1", proxy.port()), Poco::Timespan(5, 0));
    socket.setReceiveTimeout(Poco::Timespan(10, 0));
    socket.sendBytes(request.data(), static_cast<int>(request.size()));
    return socket;
  };
  // Clients that go away in the middle of a large response.
  std::thread vanishing([&] {
    for (int i = 0; i < 20; ++i) {
      auto socket = open();
      char buffer[1000];
      socket.receiveBytes(buffer, sizeof buffer);
      socket.close();
    }
  });
  // A slow reader: the proxy must stop reading the upstream, then resume, losing nothing.
  size_t slow_total = 0;
  size_t expected = 0;
  std::thread slow([&] {
    auto socket = open();
    std::string head;
    char buffer[65536];
    for (;;) {
      const int n = socket.receiveBytes(buffer, sizeof buffer);
      if (n <= 0) break;
      if (expected == 0) {
        head.append(buffer, static_cast<size_t>(n));
        const size_t end = head.find("\r\n\r\n");
        if (end == std::string::npos) continue;
        const size_t at = head.find("Content-Length: ");
        if (at == std::string::npos) break;
        expected = std::stoul(head.substr(at + 16));
        slow_total = head.size() - end - 4;
      } else {
        slow_total += static_cast<size_t>(n);
      }
      if (slow_total >= expected) break;
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
  });
  for (int i = 0; i < 10; ++i) {
    const auto response = proxy.get("/api/moved/" + std::to_string(i));
    EXPECT_EQ(response.status, 200);
  }
  vanishing.join();
  slow.join();
  EXPECT_GT(expected, 4u * 1024 * 1024);
  EXPECT_EQ(slow_total, expected);
  EXPECT_EQ(proxy.admin("GET", "/healthz").status, 200);
}

TEST_F(ProxyRoutingTest, KeepsClientConnectionsAlive) {
  ProxyProcess proxy(config());
  ASSERT_TRUE(proxy.running());
  std::string pipelined;
  for (int i = 0; i < 5; ++i)
    pipelined += "GET /api/moved/" + std::to_string(i) + " HTTP/1.1\r\nHost: t\r\n\r\n";
  pipelined += "GET /api/moved/9 HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n";
  const std::string answer = proxy.raw(pipelined);
  size_t responses = 0;
  for (size_t at = 0; (at = answer.find("HTTP/1.1 200", at)) != std::string::npos; ++at)
    ++responses;
  EXPECT_EQ(responses, 6u) << answer;
  // In order: the last response is the last request's.
  EXPECT_LT(answer.find("/v2/moved/4"), answer.find("/v2/moved/9"));
}

}  // namespace
}  // namespace strangler::proxy::testing
