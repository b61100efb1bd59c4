// HTTP/2 to the real strangler-proxy binary, from real HTTP/2 clients: curl (prior knowledge on
// the plain listener, ALPN on the HTTPS one) and nghttp with hundreds of concurrent streams on
// one connection; every stream is a request like an HTTP/1.1 one (routes, canary, fallback,
// body, X-Forwarded-Proto, the access log). Raw frames for what clients must not do: a frame
// larger than allowed, and more streams at once than the proxy allows.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <fstream>
#include <functional>
#include <sstream>
#include <string>
#include <vector>

#include "proxy_harness.h"
#include "strangler/testing/process.h"
#include "strangler/testing/temp_dir.h"

namespace strangler::proxy::testing {
namespace {

using strangler::testing::TempDir;

const strangler::testing::ChildProcess::Env kTokenEnv = {
    {"STRANGLER_TEST_ADMIN_TOKEN", "test-token"}};

/// nghttp -ns: the status of each response ("code" column of its statistics), in order.
std::vector<int> nghttpStatuses(const std::string& output) {
  std::vector<int> statuses;
  std::istringstream in(output);
  bool table = false;
  for (std::string line; std::getline(in, line);) {
    if (line.find("responseEnd requestStart") != std::string::npos) {  // the table's head
      table = true;
      continue;
    }
    if (!table) continue;
    std::istringstream fields(line);
    std::string id, end, start, process, code;
    if (fields >> id >> end >> start >> process >> code)
      statuses.push_back(std::atoi(code.c_str()));
  }
  return statuses;
}

int countOf(const std::vector<int>& statuses, int status) {
  return static_cast<int>(std::count(statuses.begin(), statuses.end(), status));
}

class H2Test : public ::testing::Test {
 protected:
  nlohmann::json config() {
    auto cfg = baseConfig(monolith_);
    addUpstream(cfg, service_);
    cfg["access_log"] = dir_.file("access.log");
    cfg["routes"] = {{{"name", "drivers"},
                      {"match", {{"path", "/api/drivers/**"}}},
                      {"target", "service"},
                      {"stage", "canary"},
                      {"percent", 50}},
                     {{"name", "orders"},
                      {"match", {{"path", "/api/orders/**"}}},
                      {"target", "service"},
                      {"stage", "extracted"},
                      {"fallback", true}}};
    return cfg;
  }
  std::string plainUrl(ProxyProcess& proxy, const std::string& path) {
    return "http://127.0.0.1:" + std::to_string(proxy.port()) + path;
  }

  TempDir dir_{"strangler-h2-test"};
  FakeUpstream monolith_{"monolith"};
  FakeUpstream service_{"service"};
};

TEST_F(H2Test, CurlWithPriorKnowledgeGetsAnswersAndSendsBodies) {
  ProxyProcess proxy(config(), kTokenEnv);
  ASSERT_TRUE(proxy.running());
  const auto got = withStderr("/usr/bin/curl", {"-sS", "-i", "--http2-prior-knowledge",
                                                plainUrl(proxy, "/api/orders/7?x=1")});
  ASSERT_EQ(got.exit_code, 0) << got.output;
  EXPECT_EQ(got.output.rfind("HTTP/2 200", 0), 0u) << got.output;
  EXPECT_NE(got.output.find("\"upstream\":\"service\""), std::string::npos) << got.output;
  // A 300 kB upload (more than the stream's 64 KiB window: given back as the request reads it).
  const std::string upload = dir_.file("upload.bin");
  {
    std::ofstream out(upload, std::ios::binary);
    for (int i = 0; i < 300000; ++i)
      out.put(static_cast<char>('a' + i % 26));
  }
  const auto posted =
      withStderr("/usr/bin/curl", {"-sS", "--http2-prior-knowledge", "--data-binary", "@" + upload,
                                   plainUrl(proxy, "/api/orders")});
  ASSERT_EQ(posted.exit_code, 0) << posted.output;
  const auto requests = service_.requests();
  ASSERT_EQ(requests.size(), 2u);
  EXPECT_EQ(requests[0].uri, "/api/orders/7?x=1");
  EXPECT_EQ(requests[0].header("x-forwarded-proto"), "http");
  EXPECT_EQ(requests[1].method, "POST");
  ASSERT_EQ(requests[1].body.size(), 300000u);
  EXPECT_EQ(requests[1].body.substr(0, 5), "abcde");
  // The access log names the protocol.
  EXPECT_TRUE(waitFor([&] {
    std::ifstream in(dir_.file("access.log"));
    const std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    return text.find("\"protocol\":\"HTTP/2\"") != std::string::npos;
  }));
  // HTTP/1.1 on the same listener is as before.
  EXPECT_EQ(proxy.get("/api/orders/8").status, 200);
}

TEST_F(H2Test, HundredsOfConcurrentStreamsOnOneConnectionFollowTheRoutes) {
  monolith_.delay_ms = 20;  // so that streams overlap
  service_.delay_ms = 20;
  ProxyProcess proxy(config(), kTokenEnv);
  ASSERT_TRUE(proxy.running());
  // 400 requests on one connection, as many at once as the proxy allows (100).
  const auto canary =
      withStderr("/usr/bin/nghttp", {"-ns", "-m", "400", plainUrl(proxy, "/api/drivers/1")});
  const auto statuses = nghttpStatuses(canary.output);
  ASSERT_EQ(statuses.size(), 400u) << canary.output.substr(0, 2000);
  EXPECT_EQ(countOf(statuses, 200), 400);
  // The canary split them between both sides.
  EXPECT_EQ(monolith_.count() + service_.count(), 400u);
  EXPECT_GT(monolith_.count(), 100u);
  EXPECT_GT(service_.count(), 100u);
  // A dead target with fallback: every stream is answered by the monolith.
  service_.stop();
  monolith_.clear();
  const auto fallback =
      withStderr("/usr/bin/nghttp", {"-ns", "-m", "50", plainUrl(proxy, "/api/orders/1")});
  EXPECT_EQ(countOf(nghttpStatuses(fallback.output), 200), 50) << fallback.output.substr(0, 2000);
  EXPECT_EQ(monolith_.count(), 50u);
  EXPECT_EQ(metricValue(proxy, "strangler_proxy_client_events_total{kind=\"h2_connection\"}"), 2);
}

TEST_F(H2Test, HttpsNegotiatesH2WithAlpnAndStillServesHttp11) {
  const std::string cert = dir_.file("cert.pem");
  const std::string key = dir_.file("key.pem");
  makeCertificate(cert, key, "127.0.0.1");
  auto cfg = config();
  cfg["tls"] = {{"listen", "127.0.0.1:0"}, {"cert_file", cert}, {"key_file", key}};
  ProxyProcess proxy(cfg, kTokenEnv);
  ASSERT_TRUE(proxy.running());
  const std::string url = "https://127.0.0.1:" + std::to_string(proxy.tlsPort()) + "/api/orders/1";
  const auto h2 = withStderr("/usr/bin/curl", {"-sS", "-i", "--http2", "--cacert", cert, url});
  ASSERT_EQ(h2.exit_code, 0) << h2.output;
  EXPECT_EQ(h2.output.rfind("HTTP/2 200", 0), 0u) << h2.output;
  const auto h1 = withStderr("/usr/bin/curl", {"-sS", "-i", "--http1.1", "--cacert", cert, url});
  EXPECT_EQ(h1.output.rfind("HTTP/1.1 200", 0), 0u) << h1.output;
  const auto many = withStderr("/usr/bin/nghttp",
                               {"-ns", "-m", "100", url});  // nghttp does not verify: fine here
  EXPECT_EQ(countOf(nghttpStatuses(many.output), 200), 100) << many.output.substr(0, 2000);
  const auto requests = service_.requests();
  ASSERT_FALSE(requests.empty());
  for (const auto& request : requests)
    EXPECT_EQ(request.header("x-forwarded-proto"), "https");
}

// Raw frames. The client preface, then frames built by hand (RFC 9113 §4.1).
std::string frame(uint8_t type, uint8_t flags, uint32_t stream, const std::string& payload) {
  std::string out;
  const uint32_t length = static_cast<uint32_t>(payload.size());
  out += static_cast<char>((length >> 16) & 0xff);
  out += static_cast<char>((length >> 8) & 0xff);
  out += static_cast<char>(length & 0xff);
  out += static_cast<char>(type);
  out += static_cast<char>(flags);
  out += static_cast<char>((stream >> 24) & 0x7f);
  out += static_cast<char>((stream >> 16) & 0xff);
  out += static_cast<char>((stream >> 8) & 0xff);
  out += static_cast<char>(stream & 0xff);
  return out + payload;
}

constexpr const char* kPreface = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

struct Frame {
  uint8_t type = 0;
  uint8_t flags = 0;
  uint32_t stream = 0;
  std::string payload;
};

/// Reads frames until the connection ends or `limit` passes without any.
/// The whole frames at the start of `bytes`.
std::vector<Frame> parseFrames(const std::string& bytes) {
  std::vector<Frame> frames;
  size_t at = 0;
  while (at + 9 <= bytes.size()) {
    const auto* p = reinterpret_cast<const unsigned char*>(bytes.data() + at);
    const size_t length = (size_t{p[0]} << 16) | (size_t{p[1]} << 8) | p[2];
    if (at + 9 + length > bytes.size()) break;
    Frame f;
    f.type = p[3];
    f.flags = p[4];
    f.stream =
        ((uint32_t{p[5]} & 0x7f) << 24) | (uint32_t{p[6]} << 16) | (uint32_t{p[7]} << 8) | p[8];
    f.payload = bytes.substr(at + 9, length);
    frames.push_back(std::move(f));
    at += 9 + length;
  }
  return frames;
}

/// Reads frames until the connection ends (or its receive timeout passes without any byte), or
/// until `enough` says so.
std::vector<Frame> readFrames(int fd,
                              const std::function<bool(const std::vector<Frame>&)>& enough = {}) {
  std::string bytes;
  char buffer[65536];
  for (ssize_t n; (n = ::recv(fd, buffer, sizeof buffer, 0)) > 0;) {
    bytes.append(buffer, static_cast<size_t>(n));
    if (enough && enough(parseFrames(bytes))) break;
  }
  return parseFrames(bytes);
}

/// `count` GET / requests on streams 1, 3, 5...: :method GET, :path /, :scheme http (static
/// table entries 2, 4, 6) and :authority "a" (a literal with its name from the table).
std::string requests(uint32_t count) {
  const std::string block = std::string("\x82\x84\x86\x41\x01", 5) + "a";
  std::string bytes;
  for (uint32_t i = 0; i < count; ++i)
    bytes += frame(0x1, 0x5, 2 * i + 1, block);  // HEADERS, END_STREAM | END_HEADERS
  return bytes;
}

uint32_t goAwayCode(const std::vector<Frame>& frames) {
  for (const auto& f : frames) {
    if (f.type != 0x7 || f.payload.size() < 8) continue;
    return static_cast<uint32_t>(static_cast<unsigned char>(f.payload[7]));
  }
  return 0xffffffff;
}

TEST_F(H2Test, AFrameTooLargeEndsOnlyItsConnection) {
  ProxyProcess proxy(config(), kTokenEnv);
  ASSERT_TRUE(proxy.running());
  const int fd = connectLoopback(proxy.port(), 3);
  ASSERT_GE(fd, 0);
  // SETTINGS, then a DATA frame of 1 MiB (the limit is 16 KiB unless raised).
  std::string bytes = std::string(kPreface) + frame(0x4, 0, 0, "");
  bytes += frame(0x0, 0, 1, std::string(1 << 20, 'x'));
  ::send(fd, bytes.data(), bytes.size(), MSG_NOSIGNAL);
  const auto frames = readFrames(fd);
  ::close(fd);
  EXPECT_EQ(goAwayCode(frames), 0x6u) << frames.size() << " frames";  // FRAME_SIZE_ERROR
  EXPECT_EQ(metricValue(proxy, "strangler_proxy_client_events_total{kind=\"h2_error\"}"), 1);
  // Only that connection: HTTP/2 and HTTP/1.1 are served.
  const auto after =
      withStderr("/usr/bin/curl", {"-sS", "-o", "/dev/null", "-w", "%{http_code}",
                                   "--http2-prior-knowledge", plainUrl(proxy, "/x")});
  EXPECT_EQ(after.output, "200");
  EXPECT_EQ(proxy.get("/x").status, 200);
}

TEST_F(H2Test, AStreamWhoseBodyStopsComingGets408AndTheConnectionGoesOn) {
  auto cfg = config();
  cfg["limits"] = {{"idle_timeout_ms", 300}};
  ProxyProcess proxy(cfg, kTokenEnv);
  ASSERT_TRUE(proxy.running());
  const int fd = connectLoopback(proxy.port(), 3);
  ASSERT_GE(fd, 0);
  // POST / with content-length 10 (a literal, name from the static table, index 28), then 5
  // bytes of it, then silence.
  const std::string post =
      std::string("\x83\x84\x86\x41\x01", 5) + "a" + std::string("\x5c\x02", 2) + "10";
  std::string bytes = std::string(kPreface) + frame(0x4, 0, 0, "");
  bytes += frame(0x1, 0x4, 1, post) + frame(0x0, 0, 1, "12345");
  ::send(fd, bytes.data(), bytes.size(), MSG_NOSIGNAL);
  // Meanwhile a GET on the same connection (stream 3), answered at once; the answer to stream
  // 1 comes after the timeout. Then the client's end.
  std::this_thread::sleep_for(std::chrono::milliseconds(100));
  bytes = requests(2).substr(requests(1).size());
  ::send(fd, bytes.data(), bytes.size(), MSG_NOSIGNAL);
  auto frames = readFrames(fd, [](const std::vector<Frame>& got) {
    return std::any_of(got.begin(), got.end(),
                       [](const Frame& f) { return f.type == 0x1 && f.stream == 1; });
  });
  bytes = frame(0x7, 0, 0, std::string(8, '\0'));
  ::send(fd, bytes.data(), bytes.size(), MSG_NOSIGNAL);
  const auto rest = readFrames(fd);
  frames.insert(frames.end(), rest.begin(), rest.end());
  ::close(fd);
  bool answered_1 = false;
  bool ok_3 = false;
  for (const auto& f : frames) {
    if (f.type == 0x1 && f.stream == 1) answered_1 = true;
    // :status 200 is entry 8 of the static table: 0x88.
    if (f.type == 0x1 && f.stream == 3 && !f.payload.empty() &&
        static_cast<unsigned char>(f.payload[0]) == 0x88)
      ok_3 = true;
  }
  EXPECT_TRUE(answered_1);
  EXPECT_TRUE(ok_3);
  EXPECT_EQ(monolith_.count(), 1u);  // the GET; the POST never went whole to anyone
  EXPECT_TRUE(waitFor([&] {
    std::ifstream in(dir_.file("access.log"));
    const std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    return text.find("\"status\":408") != std::string::npos;
  }));
}

TEST_F(H2Test, StreamsPastTheLimitAreRefusedAndTheRestAnswered) {
  monolith_.delay_ms = 300;  // the first hundred are still open when the rest arrive
  ProxyProcess proxy(config(), kTokenEnv);
  ASSERT_TRUE(proxy.running());
  // 300 streams at once, before the proxy's SETTINGS are acknowledged: past its limit of 100,
  // each is refused (the client may retry it), and the connection goes on.
  int fd = connectLoopback(proxy.port(), 3);
  ASSERT_GE(fd, 0);
  std::string bytes = std::string(kPreface) + frame(0x4, 0, 0, "") + requests(300);
  bytes += frame(0x7, 0, 0, std::string(8, '\0'));  // GOAWAY from the client: then the end
  ::send(fd, bytes.data(), bytes.size(), MSG_NOSIGNAL);
  auto frames = readFrames(fd);
  ::close(fd);
  int answered = 0;
  int refused = 0;
  for (const auto& f : frames) {
    if (f.type == 0x1) ++answered;
    if (f.type == 0x3 && f.payload.size() == 4 && f.payload[3] == 0x7) ++refused;  // REFUSED
  }
  EXPECT_GE(answered, 100) << refused << " refused";
  EXPECT_EQ(answered + refused, 300) << answered << " answered";
  EXPECT_GT(refused, 0);
  EXPECT_EQ(metricValue(proxy, "strangler_proxy_client_events_total{kind=\"h2_stream_refused\"}"),
            refused);

  // The same after acknowledging the limit: a client that ignores it gets GOAWAY
  // (PROTOCOL_ERROR) and loses its connection; nobody else notices.
  fd = connectLoopback(proxy.port(), 3);
  ASSERT_GE(fd, 0);
  bytes = std::string(kPreface) + frame(0x4, 0, 0, "");
  ::send(fd, bytes.data(), bytes.size(), MSG_NOSIGNAL);
  char head[9];
  ASSERT_EQ(::recv(fd, head, sizeof head, MSG_WAITALL), 9);
  ASSERT_EQ(head[3], 0x4);  // the proxy's SETTINGS come first
  const size_t length = (size_t{static_cast<unsigned char>(head[0])} << 16) |
                        (size_t{static_cast<unsigned char>(head[1])} << 8) |
                        static_cast<unsigned char>(head[2]);
  std::string settings(length, '\0');
  if (length > 0) {
    ASSERT_EQ(::recv(fd, settings.data(), length, MSG_WAITALL), ssize_t(length));
  }
  bytes = frame(0x4, 0x1, 0, "") + requests(300);  // ACK, then 300 streams
  ::send(fd, bytes.data(), bytes.size(), MSG_NOSIGNAL);
  frames = readFrames(fd);
  ::close(fd);
  EXPECT_EQ(goAwayCode(frames), 0x1u) << frames.size() << " frames";
  EXPECT_EQ(metricValue(proxy, "strangler_proxy_client_events_total{kind=\"h2_error\"}"), 1);
  EXPECT_EQ(proxy.get("/x").status, 200);
}

}  // namespace
}  // namespace strangler::proxy::testing
