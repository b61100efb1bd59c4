// gRPC through the real strangler-proxy binary, to upstreams with "protocol": "h2": real gRPC
// peers on both ends (grpc_peer.py, Python's grpcio), the client speaking HTTP/2 with prior
// knowledge to the proxy, the proxy speaking HTTP/2 to the services (in clear text and over
// verified TLS). Unary calls through a canary, server, client and bidi streams, a 1 MB message,
// a failing call whose status and trailing metadata must arrive as trailers — and the same
// trailers read by an HTTP/1.1 client from a chunked answer.
#include <gtest/gtest.h>

#include <sys/socket.h>
#include <unistd.h>

#include <csignal>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <thread>
#include <vector>

#include "proxy_harness.h"
#include "strangler/testing/http_client.h"
#include "strangler/testing/process.h"
#include "strangler/testing/temp_dir.h"

namespace strangler::proxy::testing {
namespace {

using strangler::testing::ChildProcess;
using strangler::testing::runCommand;
using strangler::testing::TempDir;

const ChildProcess::Env kTokenEnv = {{"STRANGLER_TEST_ADMIN_TOKEN", "test-token"}};

/// A gRPC server from grpc_peer.py and the address it listens on.
struct GrpcPeer {
  std::unique_ptr<ChildProcess> process;
  std::string address;

  static GrpcPeer start(const std::vector<std::string>& args) {
    GrpcPeer peer;
    std::vector<std::string> argv = {STRANGLER_GRPC_PEER, "server"};
    argv.insert(argv.end(), args.begin(), args.end());
    peer.process = ChildProcess::start(STRANGLER_SYSTEM_PYTHON3, argv);
    const auto line =
        peer.process->waitForLine("listening on 127.0.0.1:", std::chrono::seconds(20));
    EXPECT_TRUE(line) << peer.process->output();
    if (line) peer.address = line->substr(line->find("127.0.0.1:"));
    return peer;
  }
  /// How many calls of `method` it served.
  int calls(const std::string& method) {
    const std::string out = process->output();
    const std::string needle = "call " + method + "\n";
    int count = 0;
    for (size_t at = out.find(needle); at != std::string::npos; at = out.find(needle, at + 1))
      ++count;
    return count;
  }
};

/// Established TCP connections to 127.0.0.1:`port` (ss, from iproute2).
int connectionsTo(uint16_t port) {
  const auto listed = runCommand(
      "/usr/bin/ss", {"-tnH", "state", "established", "dst", "127.0.0.1:" + std::to_string(port)},
      std::chrono::seconds(10));
  int count = 0;
  for (const char c : listed.output)
    count += c == '\n';
  return count;
}

uint16_t portOf(const std::string& address) {
  return static_cast<uint16_t>(std::stoi(address.substr(address.rfind(':') + 1)));
}

/// How many lines of `peer`'s output are `line`.
int countLines(GrpcPeer& peer, const std::string& line) {
  const std::string out = peer.process->output();
  int count = 0;
  for (size_t at = out.find(line + "\n"); at != std::string::npos;
       at = out.find(line + "\n", at + 1))
    ++count;
  return count;
}

/// Runs `grpc_peer.py client TARGET args...` and returns its JSON report.
nlohmann::json runClient(const std::string& target, const std::vector<std::string>& args) {
  std::vector<std::string> argv = {STRANGLER_GRPC_PEER, "client", target};
  argv.insert(argv.end(), args.begin(), args.end());
  const auto result = runCommand(STRANGLER_SYSTEM_PYTHON3, argv, std::chrono::seconds(120));
  EXPECT_EQ(result.exit_code, 0) << result.output;
  const size_t brace = result.output.rfind("\n{");
  const std::string json =
      result.output.substr(brace == std::string::npos ? result.output.find('{') : brace + 1);
  return nlohmann::json::parse(json, nullptr, false);
}

/// The Echo service between two gRPC servers: `monolith` (the default upstream) and `service`,
/// both "protocol": "h2"; /api/** goes to the HTTP/1.1 monolith.
nlohmann::json grpcConfig(const FakeUpstream& http_monolith, const std::string& monolith,
                          const std::string& service, const nlohmann::json& route,
                          const nlohmann::json& service_extra = nlohmann::json::object()) {
  auto cfg = baseConfig(http_monolith);
  cfg["upstreams"]["monolith-grpc"] = {
      {"endpoints", {monolith}}, {"timeout_ms", 5000}, {"protocol", "h2"}};
  nlohmann::json service_entry = {
      {"endpoints", {service}}, {"timeout_ms", 5000}, {"protocol", "h2"}};
  service_entry.update(service_extra);
  cfg["upstreams"]["service-grpc"] = service_entry;
  cfg["default_upstream"] = "monolith-grpc";
  nlohmann::json echo = {{"name", "echo"},
                         {"match", {{"path", "/strangler.test.Echo/**"}}},
                         {"target", "service-grpc"}};
  echo.update(route);
  cfg["routes"] = {echo,
                   {{"name", "api"},
                    {"match", {{"path", "/api/**"}}},
                    {"target", http_monolith.name()},
                    {"stage", "extracted"}}};
  return cfg;
}

std::string target(ProxyProcess& proxy) {
  return "127.0.0.1:" + std::to_string(proxy.port());
}

/// What every client run checks besides the unary calls: the streams, the big message and the
/// failing call, whose status, message and trailing metadata came through as trailers.
void expectStreamsAndStatus(const nlohmann::json& report) {
  EXPECT_EQ(report["big"], true) << report.dump();
  EXPECT_EQ(report["stream"], 200) << report.dump();
  EXPECT_EQ(report["sum"], "100:4950") << report.dump();
  EXPECT_EQ(report["chat"], 50) << report.dump();
  EXPECT_EQ(report["failure"]["code"], "INVALID_ARGUMENT") << report.dump();
  EXPECT_EQ(report["failure"]["details"], "refused on purpose") << report.dump();
  EXPECT_TRUE(report["failure"]["served_by"].is_string()) << report.dump();
}

class GrpcTest : public ::testing::Test {
 protected:
  void SetUp() override {
    monolith_ = GrpcPeer::start({"monolith"});
    service_ = GrpcPeer::start({"service"});
  }

  /// nghttpd (Debian's nghttp2-server) in clear text serving dir_/htdocs with `args`; its port,
  /// 0 when it did not come up.
  uint16_t startNghttpd(std::unique_ptr<ChildProcess>& process, std::vector<std::string> args) {
    const uint16_t port = strangler::testing::freeLoopbackPort();
    args.insert(args.begin(), {"--no-tls", "-d", dir_.file("htdocs")});
    args.insert(args.end(), {"-a", "127.0.0.1", std::to_string(port)});
    process = ChildProcess::start("/usr/sbin/nghttpd", args);
    for (int i = 0; i < 200; ++i) {
      if (const int probe = connectLoopback(port, 1); probe >= 0) {
        ::close(probe);
        return port;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(25));
    }
    return 0;
  }

  TempDir dir_{"strangler-grpc-test"};
  FakeUpstream http_monolith_{"monolith"};
  GrpcPeer monolith_, service_;
};

TEST_F(GrpcTest, CallsOfEveryKindPassEndToEndThroughACanary) {
  auto cfg = grpcConfig(http_monolith_, monolith_.address, service_.address,
                        {{"stage", "canary"}, {"percent", 50}});
  cfg["access_log"] = dir_.file("access.log");
  ProxyProcess proxy(cfg, kTokenEnv);
  ASSERT_TRUE(proxy.running());
  const auto report = runClient(target(proxy), {"--calls", "400", "--concurrency", "32"});
  ASSERT_TRUE(report.is_object());
  EXPECT_EQ(report["ok"], 400) << report.dump();
  EXPECT_TRUE(report["errors"].empty()) << report.dump();
  // The canary decides per call: both sides served, and each served what its answers say.
  const int to_monolith = report["sides"].value("monolith", 0);
  const int to_service = report["sides"].value("service", 0);
  EXPECT_GT(to_monolith, 100) << report.dump();
  EXPECT_GT(to_service, 100) << report.dump();
  expectStreamsAndStatus(report);
  // 400 numbered calls + the big one + the failing one, each served once, nowhere twice (the
  // servers' lines may reach us a little after the answers).
  EXPECT_TRUE(waitFor([&] { return monolith_.calls("Echo") + service_.calls("Echo") >= 402; }));
  EXPECT_EQ(monolith_.calls("Echo") + service_.calls("Echo"), 402);
  EXPECT_GE(monolith_.calls("Echo"), to_monolith);
  EXPECT_GE(service_.calls("Echo"), to_service);
  EXPECT_EQ(monolith_.calls("Chat") + service_.calls("Chat"), 1);
  // The calls share HTTP/2 connections (a stream each): 32 at a time fit in one per side and
  // worker (the proxy runs two).
  EXPECT_LE(connectionsTo(portOf(monolith_.address)), 2);
  EXPECT_LE(connectionsTo(portOf(service_.address)), 2);
  // The HTTP/1.1 monolith on the same proxy is untouched by all of it.
  EXPECT_EQ(proxy.get("/api/drivers/1").status, 200);
  // Counted by the protocol the client spoke: 400 + 5 calls over HTTP/2, one HTTP/1.1 GET.
  EXPECT_EQ(metricValue(proxy, "strangler_proxy_requests_by_protocol_total{protocol=\"HTTP/2\"}"),
            405);
  EXPECT_EQ(metricValue(proxy, "strangler_proxy_requests_by_protocol_total{protocol=\"HTTP/1.1\"}"),
            1);
  EXPECT_TRUE(waitFor([&] {
    std::ifstream in(dir_.file("access.log"));
    const std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    return text.find("/strangler.test.Echo/Chat") != std::string::npos &&
           text.find("\"protocol\":\"HTTP/2\"") != std::string::npos;
  }));
}

TEST_F(GrpcTest, AnHttp11ClientReadsTheStatusFromTheTrailers) {
  ProxyProcess proxy(
      grpcConfig(http_monolith_, monolith_.address, service_.address, {{"stage", "extracted"}}),
      kTokenEnv);
  ASSERT_TRUE(proxy.running());
  // One length-prefixed message (flag 0, length 5, "hello"), and one that fails.
  auto call = [&](const std::string& message) {
    std::string body(1, '\0');
    body += std::string{0, 0, 0, static_cast<char>(message.size())};
    body += message;
    return proxy.raw(
        "POST /strangler.test.Echo/Echo HTTP/1.1\r\nHost: grpc.internal\r\n"
        "Content-Type: application/grpc\r\nTE: trailers\r\nConnection: close\r\n"
        "Content-Length: " +
        std::to_string(body.size()) + "\r\n\r\n" + body);
  };
  const std::string ok = call("hello");
  EXPECT_EQ(rawStatus(ok), 200) << ok;
  EXPECT_NE(ok.find("Transfer-Encoding: chunked"), std::string::npos) << ok;
  EXPECT_NE(ok.find("service:hello"), std::string::npos) << ok;
  // The last chunk, then the trailers.
  const size_t last = ok.find("\r\n0\r\n");
  ASSERT_NE(last, std::string::npos) << ok;
  const std::string trailers = ok.substr(last);
  EXPECT_NE(trailers.find("grpc-status: 0\r\n"), std::string::npos) << ok;
  EXPECT_NE(trailers.find("x-served-by: service\r\n"), std::string::npos) << ok;
  const std::string failed = call("fail:now");
  EXPECT_EQ(rawStatus(failed), 200) << failed;
  EXPECT_NE(failed.find("grpc-status: 3\r\n"), std::string::npos) << failed;
  EXPECT_NE(failed.find("grpc-message: refused now\r\n"), std::string::npos) << failed;
  EXPECT_TRUE(waitFor([&] { return service_.calls("Echo") >= 2; }));
  EXPECT_EQ(service_.calls("Echo"), 2);
  EXPECT_EQ(monolith_.calls("Echo"), 0);
}

TEST_F(GrpcTest, AnAnswerWithALengthKeepsTheTrailersItAnnounces) {
  // nghttpd (Debian's nghttp2-server) answers a file with its Content-Length, a "Trailer" field
  // and the trailer: HTTP/1.1 carries trailers only after a chunked body, so the length goes.
  if (!std::filesystem::exists("/usr/sbin/nghttpd")) GTEST_SKIP() << "nghttpd is not installed";
  std::filesystem::create_directories(dir_.file("htdocs/pkg.Svc"));
  std::ofstream(dir_.file("htdocs/pkg.Svc/Call")) << "0000hello there!";
  std::unique_ptr<ChildProcess> nghttpd;
  const uint16_t port = startNghttpd(nghttpd, {"--trailer", "grpc-status: 0"});
  ASSERT_NE(port, 0) << "nghttpd did not come up";
  // nghttpd as the monolith's gRPC side: /pkg.Svc/Call matches no route.
  ProxyProcess proxy(grpcConfig(http_monolith_, "127.0.0.1:" + std::to_string(port),
                                service_.address, {{"stage", "extracted"}}),
                     kTokenEnv);
  ASSERT_TRUE(proxy.running());
  const std::string answer = proxy.raw(
      "GET /pkg.Svc/Call HTTP/1.1\r\nHost: x\r\nTE: trailers\r\n"
      "Connection: close\r\n\r\n");
  EXPECT_EQ(rawStatus(answer), 200) << answer;
  EXPECT_EQ(answer.find("content-length"), std::string::npos) << answer;
  EXPECT_NE(answer.find("\r\n10\r\n0000hello there!\r\n0\r\ngrpc-status: 0\r\n\r\n"),
            std::string::npos)
      << answer;
  const auto h2 = withStderr(
      "/usr/bin/curl", {"-sS", "-v", "--http2-prior-knowledge",
                        "http://127.0.0.1:" + std::to_string(proxy.port()) + "/pkg.Svc/Call"});
  EXPECT_NE(h2.output.find("< grpc-status: 0"), std::string::npos) << h2.output;
  EXPECT_NE(h2.output.find("0000hello there!"), std::string::npos) << h2.output;
}

TEST_F(GrpcTest, AClientThatStopsReadingSlowsOnlyItsOwnStream) {
  // Two requests on one HTTP/2 upstream connection: a 24 MB answer to a client that does not
  // read, and small ones meanwhile. The stream's window is given back only as its client takes
  // the answer, so the proxy holds a bounded part of it and the other streams go on.
  if (!std::filesystem::exists("/usr/sbin/nghttpd")) GTEST_SKIP() << "nghttpd is not installed";
  std::filesystem::create_directories(dir_.file("htdocs"));
  const size_t big = 24u << 20;
  {
    std::ofstream out(dir_.file("htdocs/big.bin"), std::ios::binary);
    for (size_t i = 0; i < big; ++i)
      out.put(static_cast<char>('a' + i % 26));
  }
  std::ofstream(dir_.file("htdocs/small.txt")) << "small";
  std::unique_ptr<ChildProcess> nghttpd;
  const uint16_t port = startNghttpd(nghttpd, {});
  ASSERT_NE(port, 0) << "nghttpd did not come up";
  ProxyProcess proxy(grpcConfig(http_monolith_, "127.0.0.1:" + std::to_string(port),
                                service_.address, {{"stage", "extracted"}}),
                     kTokenEnv);
  ASSERT_TRUE(proxy.running());
  const uint64_t rss_before = peakRss(proxy.process().pid());
  const int stalled = connectLoopback(proxy.port(), 30);
  ASSERT_GE(stalled, 0);
  const std::string request = "GET /big.bin HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
  ASSERT_EQ(::send(stalled, request.data(), request.size(), MSG_NOSIGNAL),
            static_cast<ssize_t>(request.size()));
  std::this_thread::sleep_for(std::chrono::milliseconds(500));  // the answer starts, then waits
  for (int i = 0; i < 20; ++i) {
    const auto small = proxy.get("/small.txt");
    ASSERT_EQ(small.status, 200) << "request " << i;
    ASSERT_EQ(small.body, "small");
  }
  // The small ones shared connections with the big one: one per worker (the proxy runs two).
  EXPECT_LE(connectionsTo(port), 2);
  // Stopped: the socket buffers, the proxy's 1 MiB for the client and the stream's window; not
  // the 24 MB.
  const uint64_t grown = peakRss(proxy.process().pid()) - rss_before;
  EXPECT_LT(grown, 12u << 20) << grown;
  // Then read: all of it, in order.
  std::string answer;
  char buffer[65536];
  for (ssize_t n; (n = ::recv(stalled, buffer, sizeof buffer, 0)) > 0;)
    answer.append(buffer, static_cast<size_t>(n));
  ::close(stalled);
  const size_t body = answer.find("\r\n\r\n");
  ASSERT_NE(body, std::string::npos) << answer.substr(0, 200);
  ASSERT_EQ(answer.size() - body - 4, big) << answer.substr(0, body);
  EXPECT_EQ(answer.substr(body + 4, 26), "abcdefghijklmnopqrstuvwxyz");
  std::string tail;
  for (size_t i = big - 4; i < big; ++i)
    tail += static_cast<char>('a' + i % 26);
  EXPECT_EQ(answer.substr(answer.size() - 4), tail);
}

TEST_F(GrpcTest, CancelledCallsResetTheirStreamsAndTheOthersGoOn) {
  // 200 calls cancelled by their deadline while the service works on them, all at once on the
  // shared connections: each cancel resets its stream to the service (which sees the call
  // cancelled), and the calls after them, on the same connections, are all answered.
  ProxyProcess proxy(
      grpcConfig(http_monolith_, monolith_.address, service_.address, {{"stage", "extracted"}}),
      kTokenEnv);
  ASSERT_TRUE(proxy.running());
  const auto report =
      runClient(target(proxy), {"--cancelled", "200", "--calls", "200", "--concurrency", "32"});
  ASSERT_TRUE(report.is_object());
  EXPECT_EQ(report["cancelled"], 200) << report.dump();
  EXPECT_EQ(report["ok"], 200) << report.dump();
  EXPECT_TRUE(report["errors"].empty()) << report.dump();
  expectStreamsAndStatus(report);
  // The service learnt of the cancels (RST_STREAM from the proxy), for the calls it had begun.
  EXPECT_TRUE(waitFor([&] { return service_.calls("Slow") > 0; }));
  EXPECT_TRUE(waitFor([&] {
    return service_.calls("Slow") == countLines(service_, "cancelled Slow");
  })) << service_.calls("Slow")
      << " begun, " << countLines(service_, "cancelled Slow") << " seen cancelled";
  EXPECT_LE(connectionsTo(portOf(service_.address)), 2);
}

TEST_F(GrpcTest, VerifiedTlsToTheServiceAndAClearErrorWithoutHttp2) {
  const std::string cert = dir_.file("cert.pem");
  const std::string key = dir_.file("key.pem");
  makeCertificate(cert, key, "grpc.internal", "DNS:grpc.internal");
  GrpcPeer secure = GrpcPeer::start({"secure", "--tls", cert, key});
  // A TLS server that speaks no HTTP/2 (openssl s_server offers no ALPN).
  auto plain_tls = ChildProcess::start(
      "/usr/bin/openssl",
      {"s_server", "-accept", "127.0.0.1:0", "-cert", cert, "-key", key, "-www", "-naccept", "10"});
  const auto accept = plain_tls->waitForLine("ACCEPT 127.0.0.1:", std::chrono::seconds(10));
  ASSERT_TRUE(accept) << plain_tls->output();
  const std::string plain_tls_address = accept->substr(accept->find("127.0.0.1:"));

  const nlohmann::json tls = {{"ca_file", cert}, {"server_name", "grpc.internal"}};
  auto cfg = grpcConfig(http_monolith_, monolith_.address, secure.address, {{"stage", "extracted"}},
                        {{"tls", tls}});
  cfg["upstreams"]["no-h2"] = {
      {"endpoints", {plain_tls_address}}, {"timeout_ms", 3000}, {"protocol", "h2"}, {"tls", tls}};
  cfg["routes"].push_back({{"name", "no-h2"},
                           {"match", {{"path", "/no.h2.Service/**"}}},
                           {"target", "no-h2"},
                           {"stage", "extracted"}});
  ProxyProcess proxy(cfg, kTokenEnv);
  ASSERT_TRUE(proxy.running());
  const auto report = runClient(target(proxy), {"--calls", "100", "--concurrency", "16"});
  ASSERT_TRUE(report.is_object());
  EXPECT_EQ(report["ok"], 100) << report.dump();
  EXPECT_EQ(report["sides"].value("secure", 0), 100) << report.dump();
  expectStreamsAndStatus(report);
  EXPECT_TRUE(waitFor([&] { return secure.calls("Echo") >= 102; }));
  EXPECT_EQ(secure.calls("Echo"), 102);
  // Never HTTP/1.1 bytes instead: a 502, and a line that says why.
  const std::string refused = proxy.raw(
      "POST /no.h2.Service/Call HTTP/1.1\r\nHost: x\r\nContent-Type: application/grpc\r\n"
      "Content-Length: 0\r\nConnection: close\r\n\r\n");
  EXPECT_EQ(rawStatus(refused), 502) << refused;
  EXPECT_NE(refused.find("upstream 'no-h2' failed (alpn)"), std::string::npos) << refused;
  EXPECT_EQ(metricValue(proxy,
                        "strangler_proxy_upstream_errors_total{upstream=\"no-h2\","
                        "kind=\"alpn\"}"),
            1);
}

TEST_F(GrpcTest, AServiceThatDiesFailsItsCallsAndTheProxyServesOn) {
  ProxyProcess proxy(
      grpcConfig(http_monolith_, monolith_.address, service_.address, {{"stage", "extracted"}}),
      kTokenEnv);
  ASSERT_TRUE(proxy.running());
  auto before = runClient(target(proxy), {"--calls", "20", "--concurrency", "4"});
  EXPECT_EQ(before["ok"], 20) << before.dump();
  // Pooled HTTP/2 connections to it are now idle in the proxy; then it is killed.
  service_.process->signal(SIGKILL);
  service_.process->wait(std::chrono::seconds(5));
  const auto after = runClient(target(proxy), {"--calls", "20", "--concurrency", "4"});
  EXPECT_EQ(after["ok"], 0) << after.dump();
  ASSERT_FALSE(after["errors"].empty()) << after.dump();
  EXPECT_NE(after["errors"][0].get<std::string>().find("UNAVAILABLE"), std::string::npos)
      << after.dump();
  // The rest of the proxy is unaffected.
  EXPECT_EQ(proxy.get("/api/drivers/1").status, 200);
  EXPECT_GT(metricValue(proxy,
                        "strangler_proxy_upstream_errors_total{upstream=\"service-grpc\","
                        "kind=\"connect\"}"),
            0);
}

}  // namespace
}  // namespace strangler::proxy::testing
