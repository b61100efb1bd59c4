// WebSocket (and any `Upgrade`) through the real strangler-proxy binary: real WebSocket peers
// on both ends (ws_peer.py, the `websockets` library), many concurrent connections each with
// a known conversation, some of them dropped mid-way; the route's stage deciding the side at
// the upgrade; never a shadow copy; the idle timeout; a refused upgrade; and a peer that stops
// reading, which must not grow the proxy's memory.
#include <arpa/inet.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include "proxy_harness.h"
#include "strangler/testing/process.h"
#include "strangler/testing/temp_dir.h"

namespace strangler::proxy::testing {
namespace {

using strangler::testing::ChildProcess;
using strangler::testing::runCommand;

const ChildProcess::Env kTokenEnv = {{"STRANGLER_TEST_ADMIN_TOKEN", "test-token"}};

/// A peer from ws_peer.py ("server NAME ..." or "stall") and the address it listens on.
struct Peer {
  std::unique_ptr<ChildProcess> process;
  std::string address;

  static Peer start(const std::vector<std::string>& args) {
    Peer peer;
    std::vector<std::string> argv = {STRANGLER_WS_PEER};
    argv.insert(argv.end(), args.begin(), args.end());
    peer.process = ChildProcess::start(STRANGLER_SYSTEM_PYTHON3, argv);
    const auto line =
        peer.process->waitForLine("listening on 127.0.0.1:", std::chrono::seconds(10));
    EXPECT_TRUE(line) << peer.process->output();
    if (line) peer.address = line->substr(line->find("127.0.0.1:"));
    return peer;
  }
  /// How many WebSocket connections it accepted.
  size_t connections() {
    const std::string out = process->output();
    size_t count = 0;
    for (size_t at = out.find("connection "); at != std::string::npos;
         at = out.find("connection ", at + 1))
      ++count;
    return count;
  }
};

/// Runs `ws_peer.py client URL args...` and returns its JSON report.
nlohmann::json runClients(const std::string& url, const std::vector<std::string>& args) {
  std::vector<std::string> argv = {STRANGLER_WS_PEER, "client", url};
  argv.insert(argv.end(), args.begin(), args.end());
  const auto result = runCommand(STRANGLER_SYSTEM_PYTHON3, argv, std::chrono::seconds(60));
  EXPECT_EQ(result.exit_code, 0) << result.output;
  const size_t brace = result.output.rfind("\n{");
  const std::string json =
      result.output.substr(brace == std::string::npos ? result.output.find('{') : brace + 1);
  return nlohmann::json::parse(json, nullptr, false);
}

/// The chat route (/ws/**) between two WebSocket servers: monolith-ws is the monolith (the
/// default upstream), service-ws the extracted side. /api/** goes to the HTTP monolith.
nlohmann::json tunnelConfig(const FakeUpstream& monolith, const std::string& monolith_ws,
                            const std::string& service_ws, const nlohmann::json& route) {
  auto cfg = baseConfig(monolith);
  cfg["upstreams"]["monolith-ws"] = {{"endpoints", {monolith_ws}}, {"timeout_ms", 3000}};
  cfg["upstreams"]["service-ws"] = {{"endpoints", {service_ws}}, {"timeout_ms", 3000}};
  cfg["default_upstream"] = "monolith-ws";
  nlohmann::json chat = {
      {"name", "chat"}, {"match", {{"path", "/ws/**"}}}, {"target", "service-ws"}};
  chat.update(route);
  cfg["routes"] = {chat,
                   {{"name", "api"},
                    {"match", {{"path", "/api/**"}}},
                    {"target", monolith.name()},
                    {"stage", "extracted"}}};
  return cfg;
}

class TunnelTest : public ::testing::Test {
 protected:
  void SetUp() override {
    monolith_ws_ = Peer::start({"server", "monolith"});
    service_ws_ = Peer::start({"server", "service"});
  }

  double event(ProxyProcess& proxy, const std::string& kind) {
    return metricValue(proxy, "strangler_proxy_client_events_total{kind=\"" + kind + "\"}");
  }

  FakeUpstream monolith_{"monolith"};
  Peer monolith_ws_, service_ws_;
};

TEST_F(TunnelTest, ManyConversationsPassWholeAndInOrderWhileSomePeersVanish) {
  ProxyProcess proxy(
      tunnelConfig(monolith_, monolith_ws_.address, service_ws_.address, {{"stage", "extracted"}}),
      kTokenEnv);
  ASSERT_TRUE(proxy.running());
  const std::string url = "ws://127.0.0.1:" + std::to_string(proxy.port()) + "/ws/chat";
  // 40 connections x 50 numbered messages and a 1 MB binary message each; 4 of them drop
  // their TCP connection half way. Every echo is checked, in order, by the client.
  const auto report =
      runClients(url, {"--clients", "40", "--messages", "50", "--size", "1000000", "--abort", "4"});
  ASSERT_TRUE(report.is_object());
  EXPECT_EQ(report["errors"], nlohmann::json::array()) << report.dump();
  EXPECT_EQ(report["ok"], 36) << report.dump();
  EXPECT_EQ(report["aborted"], 4);
  EXPECT_EQ(report["sides"], nlohmann::json({{"service", 36}}));
  EXPECT_EQ(monolith_ws_.connections(), 0u);
  EXPECT_TRUE(waitFor([&] { return event(proxy, "tunnel_closed") == 40; }))
      << event(proxy, "tunnel_closed");
  EXPECT_EQ(event(proxy, "tunnel_opened"), 40);
  EXPECT_EQ(metricValue(proxy,
                        "strangler_proxy_requests_total{route=\"chat\",upstream=\"service-"
                        "ws\",status=\"101\"}"),
            40);
  // The workers are as they were: plain requests are served.
  EXPECT_EQ(proxy.get("/api/orders/1").status, 200);
}

TEST_F(TunnelTest, ReloadsDuringTheConversationsDropNone) {
  // A reload swaps the config for new requests; open tunnels go on with the bytes they carry.
  ProxyProcess proxy(
      tunnelConfig(monolith_, monolith_ws_.address, service_ws_.address, {{"stage", "extracted"}}),
      kTokenEnv);
  ASSERT_TRUE(proxy.running());
  const std::string url = "ws://127.0.0.1:" + std::to_string(proxy.port()) + "/ws/chat";
  nlohmann::json report;
  std::thread clients([&] { report = runClients(url, {"--clients", "20", "--messages", "400"}); });
  int reloads = 0;
  while (reloads < 10 && event(proxy, "tunnel_closed") < 20) {
    if (proxy.admin("POST", "/reload", {{"Authorization", "Bearer test-token"}}).status == 200)
      ++reloads;
    std::this_thread::sleep_for(std::chrono::milliseconds(30));
  }
  clients.join();
  EXPECT_GE(reloads, 3) << "the conversations ended before the reloads";
  EXPECT_EQ(report["errors"], nlohmann::json::array()) << report.dump();
  EXPECT_EQ(report["ok"], 20) << report.dump();
}

TEST_F(TunnelTest, TheCanaryDecidesTheSideAtTheUpgradeAndShadowNeverCopies) {
  ProxyProcess canary(tunnelConfig(monolith_, monolith_ws_.address, service_ws_.address,
                                   {{"stage", "canary"}, {"percent", 50}}),
                      kTokenEnv);
  ASSERT_TRUE(canary.running());
  const auto report = runClients("ws://127.0.0.1:" + std::to_string(canary.port()) + "/ws/chat",
                                 {"--clients", "40"});
  EXPECT_EQ(report["errors"], nlohmann::json::array()) << report.dump();
  EXPECT_EQ(report["ok"], 40);
  // Each connection talked to one side from its first message to its last (the client checks);
  // both sides got some of the 40 (the chance of all on one side is 2 x 2^-40).
  EXPECT_GT(report["sides"].value("monolith", 0), 0) << report.dump();
  EXPECT_GT(report["sides"].value("service", 0), 0) << report.dump();
  EXPECT_EQ(monolith_ws_.connections() + service_ws_.connections(), 40u);

  const size_t service_before = service_ws_.connections();
  ProxyProcess shadow(
      tunnelConfig(monolith_, monolith_ws_.address, service_ws_.address, {{"stage", "shadow"}}),
      kTokenEnv);
  ASSERT_TRUE(shadow.running());
  const auto shadowed = runClients("ws://127.0.0.1:" + std::to_string(shadow.port()) + "/ws/chat",
                                   {"--clients", "10"});
  EXPECT_EQ(shadowed["ok"], 10) << shadowed.dump();
  EXPECT_EQ(shadowed["sides"], nlohmann::json({{"monolith", 10}}));
  // A tunnel is never copied: the shadow side saw no connection, and nothing was offered.
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  EXPECT_EQ(service_ws_.connections(), service_before);
  const auto diffs =
      nlohmann::json::parse(shadow.admin("GET", "/diffs?route=chat").body, nullptr, false);
  ASSERT_TRUE(diffs.is_object());
  for (const char* counter : {"compared", "dropped", "too_large", "target_errors"})
    EXPECT_EQ(diffs["counters"].value(counter, -1), 0) << counter << ": " << diffs.dump();
}

TEST_F(TunnelTest, AnIdleTunnelIsClosedAndCounted) {
  auto cfg =
      tunnelConfig(monolith_, monolith_ws_.address, service_ws_.address, {{"stage", "extracted"}});
  cfg["limits"] = {{"tunnel_idle_timeout_ms", 300}};
  ProxyProcess proxy(cfg, kTokenEnv);
  ASSERT_TRUE(proxy.running());
  const auto report =
      runClients("ws://127.0.0.1:" + std::to_string(proxy.port()) + "/ws/chat", {"--idle", "3"});
  EXPECT_EQ(report["first"], "service:first") << report.dump();
  EXPECT_EQ(report["closed"], true) << report.dump();
  // Closed after the timeout, not at once (the proxy's clock ticks every 100 ms or so).
  EXPECT_GE(report.value("closed_after_s", 0.0), 0.25) << report.dump();
  EXPECT_LT(report.value("closed_after_s", 9.0), 2.0) << report.dump();
  EXPECT_TRUE(waitFor([&] { return event(proxy, "tunnel_idle_timeout") == 1; }));
}

TEST_F(TunnelTest, SecureWebSocketsPassTheHttpsListenerToATlsUpstream) {
  // wss:// to the proxy's HTTPS listener, and TLS again (verified) from the proxy to the
  // service: the tunnel carries the bytes inside both.
  strangler::testing::TempDir dir("strangler-tunnel-tls");
  const std::string cert = dir.file("cert.pem");
  const std::string key = dir.file("key.pem");
  makeCertificate(cert, key, "127.0.0.1");
  Peer secure = Peer::start({"server", "secure", "--tls", cert, key});
  auto cfg =
      tunnelConfig(monolith_, monolith_ws_.address, secure.address, {{"stage", "extracted"}});
  cfg["upstreams"]["service-ws"]["tls"] = {{"ca_file", cert}};
  cfg["tls"] = {{"listen", "127.0.0.1:0"}, {"cert_file", cert}, {"key_file", key}};
  ProxyProcess proxy(cfg, kTokenEnv);
  ASSERT_TRUE(proxy.running());
  ASSERT_NE(proxy.tlsPort(), 0);
  const auto report =
      runClients("wss://127.0.0.1:" + std::to_string(proxy.tlsPort()) + "/ws/chat",
                 {"--clients", "10", "--messages", "20", "--size", "300000", "--cafile", cert});
  EXPECT_EQ(report["errors"], nlohmann::json::array()) << report.dump();
  EXPECT_EQ(report["ok"], 10) << report.dump();
  EXPECT_EQ(report["sides"], nlohmann::json({{"secure", 10}}));
}

constexpr const char* kUpgradeRequest =
    "GET /ws/chat HTTP/1.1\r\nHost: app\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";

/// Reads up to the end of a response head.
std::string readHead(int fd) {
  std::string head;
  char byte;
  while (head.find("\r\n\r\n") == std::string::npos && ::recv(fd, &byte, 1, 0) == 1)
    head += byte;
  return head;
}

/// A connection to the proxy that sent kUpgradeRequest and read the 101; -1 (and the test
/// failed) otherwise.
int upgraded(uint16_t port) {
  const int fd = connectLoopback(port, 5);
  EXPECT_GE(fd, 0);
  if (fd < 0) return -1;
  const auto length = static_cast<ssize_t>(std::strlen(kUpgradeRequest));
  const std::string head =
      ::send(fd, kUpgradeRequest, std::strlen(kUpgradeRequest), MSG_NOSIGNAL) == length
          ? readHead(fd)
          : "";
  if (rawStatus(head) == 101) return fd;
  ADD_FAILURE() << "no 101: " << head;
  ::close(fd);
  return -1;
}

TEST_F(TunnelTest, ARefusedUpgradeIsRelayedAndTheConnectionEnds) {
  Peer refusing = Peer::start({"server", "refusing", "--refuse", "403"});
  ProxyProcess proxy(
      tunnelConfig(monolith_, monolith_ws_.address, refusing.address, {{"stage", "extracted"}}),
      kTokenEnv);
  ASSERT_TRUE(proxy.running());
  const int fd = connectLoopback(proxy.port(), 5);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(::send(fd, kUpgradeRequest, std::strlen(kUpgradeRequest), MSG_NOSIGNAL),
            static_cast<ssize_t>(std::strlen(kUpgradeRequest)));
  std::string answer;
  char buffer[4096];
  for (ssize_t n; (n = ::recv(fd, buffer, sizeof buffer, 0)) > 0;)
    answer.append(buffer, static_cast<size_t>(n));
  ::close(fd);
  EXPECT_EQ(rawStatus(answer), 403) << answer;
  EXPECT_NE(answer.find("refused"), std::string::npos) << answer;
  EXPECT_NE(answer.find("Connection: close"), std::string::npos) << answer;
  EXPECT_EQ(event(proxy, "tunnel_opened"), 0);
}

TEST_F(TunnelTest, WhatAPeerSendsRightAfterThe101ArrivesWhole) {
  // 1 MB in the same writes as the 101 head, then the peer's close: none of it may be lost,
  // nor the close taken for the end of a second head.
  Peer eager = Peer::start({"stall", "--early", "1000000", "--close"});
  ProxyProcess proxy(
      tunnelConfig(monolith_, monolith_ws_.address, eager.address, {{"stage", "extracted"}}),
      kTokenEnv);
  ASSERT_TRUE(proxy.running());
  const int fd = upgraded(proxy.port());
  ASSERT_GE(fd, 0);
  std::string early;
  char buffer[16384];
  while (early.size() < 1000000) {
    const ssize_t n = ::recv(fd, buffer, sizeof buffer, 0);
    if (n <= 0) break;
    early.append(buffer, static_cast<size_t>(n));
  }
  // Then the peer's end reaches the client.
  EXPECT_EQ(::recv(fd, buffer, sizeof buffer, 0), 0);
  ::close(fd);
  ASSERT_EQ(early.size(), 1000000u);
  for (size_t i = 0; i < early.size(); ++i)
    ASSERT_EQ(static_cast<unsigned char>(early[i]), i % 251) << "byte " << i;
  // ...and the proxy lives on, with the tunnel counted as closed.
  EXPECT_EQ(proxy.get("/api/orders/1").status, 200);
  EXPECT_TRUE(waitFor([&] { return event(proxy, "tunnel_closed") == 1; }));
}

TEST_F(TunnelTest, APeerThatStopsReadingDoesNotGrowTheProxysMemory) {
  Peer stalled = Peer::start({"stall"});
  ProxyProcess proxy(
      tunnelConfig(monolith_, monolith_ws_.address, stalled.address, {{"stage", "extracted"}}),
      kTokenEnv);
  ASSERT_TRUE(proxy.running());
  const int fd = upgraded(proxy.port());
  ASSERT_GE(fd, 0);
  const uint64_t rss_before = peakRss(proxy.process().pid());
  // Pushes up to 256 MiB at a peer that reads nothing: the client is stopped once the sockets'
  // buffers and the proxy's window are full.
  ::fcntl(fd, F_SETFL, O_NONBLOCK);
  const std::string chunk(1 << 16, 'x');
  uint64_t pushed = 0;
  auto quiet_since = std::chrono::steady_clock::now();
  while (pushed < (uint64_t{256} << 20) &&
         std::chrono::steady_clock::now() - quiet_since < std::chrono::seconds(1)) {
    const ssize_t n = ::send(fd, chunk.data(), chunk.size(), MSG_NOSIGNAL);
    if (n > 0) {
      pushed += static_cast<uint64_t>(n);
      quiet_since = std::chrono::steady_clock::now();
      continue;
    }
    pollfd ready{fd, POLLOUT, 0};
    ::poll(&ready, 1, 100);
  }
  const uint64_t rss_after = peakRss(proxy.process().pid());
  ::close(fd);
  EXPECT_LT(pushed, uint64_t{128} << 20) << "the client was never stopped";
  // The proxy holds at most its window per direction (256 KiB) plus one read: the rest waits
  // in the kernel's socket buffers.
  EXPECT_LT(rss_after - rss_before, uint64_t{8} << 20)
      << "pushed " << pushed << " bytes; the proxy grew from " << rss_before << " to " << rss_after;
  // The other workers' connections are unaffected meanwhile.
  EXPECT_EQ(proxy.get("/api/orders/1").status, 200);
}

}  // namespace
}  // namespace strangler::proxy::testing
