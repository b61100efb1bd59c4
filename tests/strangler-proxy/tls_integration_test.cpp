// The HTTPS listener ("tls") of the real strangler-proxy binary, driven by real TLS clients:
// curl and `openssl s_client` for what users run, and an OpenSSL client in this process for many
// concurrent keep-alive connections with a known answer to every request. Certificates are made
// by the openssl tool for each test.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <filesystem>
#include <fstream>
#include <memory>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "proxy_harness.h"
#include "strangler/proxy/config.h"
#include "strangler/testing/process.h"
#include "strangler/testing/temp_dir.h"

namespace strangler::proxy::testing {
namespace {

using strangler::testing::runCommand;
using strangler::testing::TempDir;

constexpr const char* kOpenSsl = "/usr/bin/openssl";
constexpr const char* kCurl = "/usr/bin/curl";
const strangler::testing::ChildProcess::Env kTokenEnv = {
    {"STRANGLER_TEST_ADMIN_TOKEN", "test-token"}};
const std::map<std::string, std::string> kAuth = {{"Authorization", "Bearer test-token"}};

/// A blocking TLS client connection to 127.0.0.1:`port`, verifying the server against `ca`.
class TlsClient {
 public:
  TlsClient(uint16_t port, const std::string& ca) {
    ctx_ = SSL_CTX_new(TLS_client_method());
    SSL_CTX_set_verify(ctx_, SSL_VERIFY_PEER, nullptr);
    SSL_CTX_load_verify_locations(ctx_, ca.c_str(), nullptr);
    fd_ = connectLoopback(port, 10);
    if (fd_ < 0) return;
    ssl_ = SSL_new(ctx_);
    SSL_set_fd(ssl_, fd_);
    SSL_set1_host(ssl_, "127.0.0.1");
    static const unsigned char kAlpn[] = {8, 'h', 't', 't', 'p', '/', '1', '.', '1'};
    SSL_set_alpn_protos(ssl_, kAlpn, sizeof kAlpn);
    connected_ = SSL_connect(ssl_) == 1;
    if (!connected_) {
      char text[256];
      ERR_error_string_n(ERR_get_error(), text, sizeof text);
      error_ = text;
    }
  }
  ~TlsClient() {
    if (ssl_ != nullptr) SSL_free(ssl_);
    if (fd_ >= 0) ::close(fd_);
    SSL_CTX_free(ctx_);
  }
  TlsClient(const TlsClient&) = delete;
  TlsClient& operator=(const TlsClient&) = delete;

  bool connected() const { return connected_; }
  const std::string& error() const { return error_; }

  /// The server certificate's subject CN.
  std::string peerName() const {
    X509* cert = SSL_get1_peer_certificate(ssl_);
    if (cert == nullptr) return "";
    char name[256] = {0};
    X509_NAME_get_text_by_NID(X509_get_subject_name(cert), NID_commonName, name, sizeof name);
    X509_free(cert);
    return name;
  }

  /// One keep-alive GET; returns status and body ("" status 0 on a broken connection).
  std::pair<int, std::string> get(const std::string& target) {
    const std::string request =
        "GET " + target + " HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: tls-test\r\n\r\n";
    if (SSL_write(ssl_, request.data(), static_cast<int>(request.size())) <= 0) return {0, ""};
    std::string in;
    char buffer[16384];
    size_t head_end = std::string::npos;
    size_t length = 0;
    while (head_end == std::string::npos || in.size() < head_end + 4 + length) {
      const int n = SSL_read(ssl_, buffer, sizeof buffer);
      if (n <= 0) return {0, ""};
      in.append(buffer, static_cast<size_t>(n));
      if (head_end == std::string::npos && (head_end = in.find("\r\n\r\n")) != std::string::npos) {
        const auto at = in.find("Content-Length: ");
        if (at == std::string::npos || at > head_end) return {0, in};
        length = std::stoul(in.substr(at + 16));
      }
    }
    const int status = std::stoi(in.substr(9, 3));
    return {status, in.substr(head_end + 4, length)};
  }

 private:
  SSL_CTX* ctx_ = nullptr;
  SSL* ssl_ = nullptr;
  int fd_ = -1;
  bool connected_ = false;
  std::string error_;
};

/// Sends `bytes` on a plain TCP connection to `port` and returns what comes back before the
/// proxy closes it (or 5 s pass); with `wait` false, closes at once.
std::string rawExchange(uint16_t port, const std::string& bytes, bool wait = true) {
  const int fd = connectLoopback(port, 5);
  std::string out;
  if (fd < 0) return out;
  if (!bytes.empty()) [[maybe_unused]]
    auto sent = ::send(fd, bytes.data(), bytes.size(), 0);
  char buffer[4096];
  for (ssize_t n; wait && (n = ::recv(fd, buffer, sizeof buffer, 0)) > 0;)
    out.append(buffer, static_cast<size_t>(n));
  ::close(fd);
  return out;
}

class TlsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    cert_ = dir_.file("cert.pem");
    key_ = dir_.file("key.pem");
    makeCertificate(cert_, key_, "first");
    config_ = baseConfig(monolith_);
    addUpstream(config_, service_);
    config_["routes"] = {{{"name", "drivers"},
                          {"match", {{"path", "/api/drivers/**"}}},
                          {"target", "service"},
                          {"stage", "extracted"}}};
    config_["tls"] = {{"listen", "127.0.0.1:0"}, {"cert_file", cert_}, {"key_file", key_}};
  }

  std::string curl(const std::string& target, std::vector<std::string> extra = {}) {
    std::vector<std::string> args = {
        "-sS",
        "--cacert",
        cert_,
        "-w",
        "\n%{http_code} %{http_version}",
        "https://127.0.0.1:" + std::to_string(proxy_->tlsPort()) + target};
    args.insert(args.begin(), extra.begin(), extra.end());
    const auto result = runCommand(kCurl, args, std::chrono::seconds(20));
    return result.output;
  }

  TempDir dir_{"strangler-tls-test"};
  std::string cert_, key_;
  FakeUpstream monolith_{"monolith"};
  FakeUpstream service_{"service"};
  nlohmann::json config_;
  std::unique_ptr<ProxyProcess> proxy_;
};

TEST_F(TlsTest, HttpsRequestsRouteLikePlainOnesAndSayHttpsUpstream) {
  proxy_ = std::make_unique<ProxyProcess>(config_, kTokenEnv);
  ASSERT_TRUE(proxy_->running());
  ASSERT_NE(proxy_->tlsPort(), 0);
  const auto routed = curl("/api/drivers/7");
  EXPECT_NE(routed.find("\"upstream\":\"service\""), std::string::npos) << routed;
  EXPECT_NE(routed.find("\n200 2"), std::string::npos) << routed;  // curl takes h2 when offered
  const auto other = curl("/api/rides/1", {"-X", "POST", "-d", "{\"a\":1}"});
  EXPECT_NE(other.find("\"upstream\":\"monolith\""), std::string::npos) << other;
  ASSERT_EQ(service_.count(), 1u);
  EXPECT_EQ(service_.requests()[0].header("x-forwarded-proto"), "https");
  ASSERT_EQ(monolith_.count(), 1u);
  EXPECT_EQ(monolith_.requests()[0].body, "{\"a\":1}");
  // The plain listener still says http.
  EXPECT_EQ(proxy_->get("/api/drivers/8").status, 200);
  EXPECT_EQ(service_.requests().back().header("x-forwarded-proto"), "http");
  EXPECT_EQ(metricValue(*proxy_, "strangler_proxy_client_events_total{kind=\"tls_handshake\"}"), 2);
}

TEST_F(TlsTest, OnlyTls12AndUpWithForwardSecretAeadSuites) {
  proxy_ = std::make_unique<ProxyProcess>(config_, kTokenEnv);
  ASSERT_TRUE(proxy_->running());
  const std::string address = "127.0.0.1:" + std::to_string(proxy_->tlsPort());
  const auto handshake = [&](std::vector<std::string> extra, bool brief = true) {
    std::vector<std::string> args = {"s_client", "-connect", address, "-CAfile", cert_};
    if (brief) args.push_back("-brief");
    args.insert(args.end(), extra.begin(), extra.end());
    return withStderr(kOpenSsl, args);
  };
  const auto tls13 = handshake({"-tls1_3"});
  EXPECT_EQ(tls13.exit_code, 0) << tls13.output;
  EXPECT_NE(tls13.output.find("Protocol version: TLSv1.3"), std::string::npos) << tls13.output;
  const auto tls12 = handshake({"-tls1_2", "-alpn", "http/1.1"});
  EXPECT_EQ(tls12.exit_code, 0) << tls12.output;
  EXPECT_NE(tls12.output.find("ECDHE-ECDSA-AES128-GCM-SHA256"), std::string::npos) << tls12.output;
  // Offered h2 and http/1.1, the proxy prefers h2; offered http/1.1 alone, that one.
  const auto alpn = handshake({"-alpn", "http/1.1,h2"}, false);
  EXPECT_NE(alpn.output.find("ALPN protocol: h2"), std::string::npos) << alpn.output;
  const auto http11 = handshake({"-alpn", "http/1.1"}, false);
  EXPECT_NE(http11.output.find("ALPN protocol: http/1.1"), std::string::npos) << http11.output;
  for (const auto& refused : std::vector<std::vector<std::string>>{
           {"-tls1_1"},                                             // an old protocol
           {"-tls1_2", "-cipher", "ECDHE-ECDSA-AES128-SHA"},        // CBC with SHA-1
           {"-tls1_2", "-cipher", "AES128-GCM-SHA256"},             // no forward secrecy
           {"-tls1_2", "-cipher", "ECDHE-ECDSA-AES128-SHA256"}}) {  // CBC
    const auto result = handshake(refused);
    EXPECT_NE(result.exit_code, 0) << refused.back() << ": " << result.output;
  }
  EXPECT_GE(
      metricValue(*proxy_, "strangler_proxy_client_events_total{kind=\"tls_handshake_failed\"}"),
      4);
  EXPECT_EQ(proxy_->get("/health-of-the-plain-listener").status, 200);
}

// Sixteen keep-alive HTTPS clients, each request answered with its own URI, while bad peers hit
// the same listener: plain HTTP, random bytes, a ClientHello cut short, a connect-and-close.
// Every good request is answered right; each bad peer only loses its own connection, counted.
TEST_F(TlsTest, BadPeersLoseOnlyTheirConnectionWhileManyClientsAreServed) {
  proxy_ = std::make_unique<ProxyProcess>(config_, kTokenEnv);
  ASSERT_TRUE(proxy_->running());
  const uint16_t port = proxy_->tlsPort();
  constexpr int kClients = 16;
  constexpr int kRequests = 40;
  std::atomic<int> answered{0};
  std::atomic<int> wrong{0};
  std::atomic<bool> done{false};
  std::vector<std::thread> threads;
  for (int c = 0; c < kClients; ++c) {
    threads.emplace_back([&, c] {
      TlsClient client(port, cert_);
      if (!client.connected()) {
        ADD_FAILURE() << "client " << c << ": " << client.error();
        return;
      }
      for (int r = 0; r < kRequests; ++r) {
        const std::string target = "/api/drivers/" + std::to_string(c) + "?n=" + std::to_string(r);
        const auto [status, body] = client.get(target);
        if (status == 200 && body.find("\"uri\":\"" + target + "\"") != std::string::npos) {
          ++answered;
        } else {
          ++wrong;
        }
      }
    });
  }
  int bad_peers = 0;
  std::thread hostile([&] {
    std::string hello_start("\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03", 11);
    while (!done) {
      // None of them gets anything but a TLS alert (or nothing) back.
      const auto plain = rawExchange(port, "GET / HTTP/1.1\r\nHost: x\r\n\r\n");
      EXPECT_EQ(plain.find("HTTP/1.1"), std::string::npos);
      rawExchange(port, std::string(300, '\xee'));
      rawExchange(port, "", false);
      ++bad_peers;
      if (bad_peers > 30) break;
    }
    // A ClientHello cut short: the proxy waits for the rest until the connection's timeout,
    // without holding anyone else up (the clients above ran meanwhile).
    const int fd = connectLoopback(port, 5);
    if (fd >= 0) [[maybe_unused]]
      auto sent = ::send(fd, hello_start.data(), hello_start.size(), 0);
    std::this_thread::sleep_for(std::chrono::milliseconds(500));
    if (fd >= 0) ::close(fd);
  });
  for (auto& thread : threads)
    thread.join();
  done = true;
  hostile.join();
  EXPECT_EQ(answered.load(), kClients * kRequests);
  EXPECT_EQ(wrong.load(), 0);
  EXPECT_EQ(service_.count(), static_cast<size_t>(kClients * kRequests));
  // Plain HTTP and random bytes fail the handshake; a connect-and-close may end before it starts.
  EXPECT_GE(
      metricValue(*proxy_, "strangler_proxy_client_events_total{kind=\"tls_handshake_failed\"}"),
      2 * bad_peers);
  EXPECT_EQ(metricValue(*proxy_, "strangler_proxy_client_events_total{kind=\"tls_handshake\"}"),
            kClients);
  TlsClient after(port, cert_);
  ASSERT_TRUE(after.connected()) << after.error();
  EXPECT_EQ(after.get("/api/drivers/after").first, 200);
}

// A new certificate on reload: new connections get it, a connection opened before keeps its
// session and goes on serving; a key that does not match fails the reload and the last good
// certificate serves on.
TEST_F(TlsTest, ReloadTakesTheNewCertificateWithoutDroppingConnections) {
  proxy_ = std::make_unique<ProxyProcess>(config_, kTokenEnv);
  ASSERT_TRUE(proxy_->running());
  TlsClient before(proxy_->tlsPort(), cert_);
  ASSERT_TRUE(before.connected()) << before.error();
  EXPECT_EQ(before.peerName(), "first");
  EXPECT_EQ(before.get("/api/drivers/1").first, 200);

  const std::string second_cert = dir_.file("second.pem");
  const std::string second_key = dir_.file("second-key.pem");
  makeCertificate(second_cert, second_key, "second");
  std::filesystem::copy_file(second_key, key_, std::filesystem::copy_options::overwrite_existing);
  std::filesystem::copy_file(second_cert, cert_, std::filesystem::copy_options::overwrite_existing);
  ASSERT_EQ(proxy_->admin("POST", "/reload", kAuth).status, 200);
  TlsClient renewed(proxy_->tlsPort(), cert_);
  ASSERT_TRUE(renewed.connected()) << renewed.error();
  EXPECT_EQ(renewed.peerName(), "second");
  EXPECT_EQ(renewed.get("/api/drivers/2").first, 200);
  EXPECT_EQ(before.get("/api/drivers/3").first, 200);

  // A key of another certificate: refused, the second one serves on.
  const std::string third_cert = dir_.file("third.pem");
  const std::string third_key = dir_.file("third-key.pem");
  makeCertificate(third_cert, third_key, "third");
  std::filesystem::copy_file(third_key, key_, std::filesystem::copy_options::overwrite_existing);
  const auto refused = proxy_->admin("POST", "/reload", kAuth);
  EXPECT_NE(refused.status, 200);
  EXPECT_NE(refused.body.find("tls.key_file '" + key_ + "' does not load"), std::string::npos)
      << refused.body;
  EXPECT_NE(refused.body.find("key values mismatch"), std::string::npos) << refused.body;
  TlsClient still(proxy_->tlsPort(), cert_);
  ASSERT_TRUE(still.connected()) << still.error();
  EXPECT_EQ(still.peerName(), "second");
  EXPECT_EQ(still.get("/api/drivers/4").first, 200);
  EXPECT_EQ(renewed.get("/api/drivers/5").first, 200);
}

// A peer that connects and never finishes its handshake is closed after limits.header_timeout_ms,
// as a slow request head would be.
TEST_F(TlsTest, AHandshakeThatNeverEndsIsClosedAfterTheHeaderTimeout) {
  config_["limits"] = {{"header_timeout_ms", 500}};
  proxy_ = std::make_unique<ProxyProcess>(config_, kTokenEnv);
  ASSERT_TRUE(proxy_->running());
  const auto started = std::chrono::steady_clock::now();
  const std::string hello_start("\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03", 11);
  EXPECT_EQ(rawExchange(proxy_->tlsPort(), hello_start), "");
  const auto waited = std::chrono::steady_clock::now() - started;
  EXPECT_GE(waited, std::chrono::milliseconds(400));
  EXPECT_LT(waited, std::chrono::milliseconds(4000));
  TlsClient after(proxy_->tlsPort(), cert_);
  ASSERT_TRUE(after.connected()) << after.error();
  EXPECT_EQ(after.get("/api/drivers/1").first, 200);
}

TEST_F(TlsTest, ACertificateThatDoesNotLoadStopsTheStartWithItsName) {
  config_["tls"]["cert_file"] = dir_.file("missing.pem");
  TempDir config_dir{"strangler-tls-config"};
  const std::string path = config_dir.file("strangler.json");
  {
    std::ofstream out(path);
    out << config_.dump();
  }
  const auto result = withStderr(STRANGLER_PROXY_BINARY, {"--config", path, "--workers", "1"});
  EXPECT_EQ(result.exit_code, 1) << result.output;
  EXPECT_NE(result.output.find("tls.cert_file '" + dir_.file("missing.pem") + "' does not load"),
            std::string::npos)
      << result.output;
  config_.erase("tls");
  config_["tls"] = {{"listen", "127.0.0.1:0"}, {"cert_file", cert_}};
  {
    std::ofstream out(path);
    out << config_.dump();
  }
  const auto invalid = withStderr(STRANGLER_PROXY_BINARY, {"--config", path, "--check-config"});
  EXPECT_EQ(invalid.exit_code, 1);
  EXPECT_NE(invalid.output.find("tls.key_file: is required"), std::string::npos) << invalid.output;
}

// Upstreams over TLS: a Python HTTPS backend (fake_backend.py, a real process) whose certificate
// names service.internal and 127.0.0.1. Verified against ca_file with SNI server_name, kept
// alive; a certificate the proxy cannot trust for the name is a 502 and a log line, never a
// request sent anyway.
class UpstreamTlsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    cert_ = dir_.file("backend.pem");
    key_ = dir_.file("backend-key.pem");
    makeCertificate(cert_, key_, "backend", "DNS:service.internal,IP:127.0.0.1");
    other_ca_ = dir_.file("other.pem");
    makeCertificate(other_ca_, dir_.file("other-key.pem"), "other");
    backend_ = strangler::testing::ChildProcess::start(
        STRANGLER_PYTHON3, {STRANGLER_FAKE_BACKEND, "secure", "0", "--tls", cert_, key_});
    const auto line = backend_->waitForLine("listening on 127.0.0.1:", std::chrono::seconds(10));
    ASSERT_TRUE(line) << backend_->output();
    backend_address_ = "127.0.0.1:" + line->substr(line->rfind(':') + 1);
  }

  nlohmann::json config(const nlohmann::json& tls) {
    auto cfg = baseConfig(monolith_);
    cfg["upstreams"]["secure"] = {{"endpoints", {backend_address_}}, {"tls", tls}};
    cfg["routes"] = {{{"name", "drivers"},
                      {"match", {{"path", "/api/drivers/**"}}},
                      {"target", "secure"},
                      {"stage", "extracted"}}};
    return cfg;
  }

  /// The proxy with its stderr in output() (the TLS log lines go there).
  void startProxy(const nlohmann::json& cfg) {
    const std::string path = dir_.file("strangler.json");
    {
      std::ofstream out(path);
      out << cfg.dump();
    }
    proxy_ = strangler::testing::ChildProcess::start(
        "/bin/sh",
        {"-c", std::string("exec '") + STRANGLER_PROXY_BINARY + "' --config '" + path +
                   "' --workers 2 2>&1"},
        kTokenEnv);
    const auto line = proxy_->waitForLine("strangler-proxy listening on", std::chrono::seconds(10));
    ASSERT_TRUE(line) << proxy_->output();
    const auto at = line->find("http://127.0.0.1:") + 17;
    port_ = static_cast<uint16_t>(std::stoi(line->substr(at)));
  }

  strangler::testing::HttpResponse get(const std::string& target) {
    return strangler::testing::httpRequest("127.0.0.1", port_, "GET", target, "", {},
                                           std::chrono::seconds(10));
  }

  TempDir dir_{"strangler-upstream-tls"};
  std::string cert_, key_, other_ca_, backend_address_;
  FakeUpstream monolith_{"monolith"};
  std::unique_ptr<strangler::testing::ChildProcess> backend_;
  std::unique_ptr<strangler::testing::ChildProcess> proxy_;
  uint16_t port_ = 0;
};

TEST_F(UpstreamTlsTest, VerifiedWithSniAndKeptAlive) {
  startProxy(config({{"ca_file", cert_}, {"server_name", "service.internal"}}));
  std::set<int64_t> ports;
  for (int i = 0; i < 20; ++i) {
    const auto response = get("/api/drivers/" + std::to_string(i));
    ASSERT_EQ(response.status, 200) << response.body;
    const auto body = nlohmann::json::parse(response.body);
    EXPECT_EQ(body["uri"], "/api/drivers/" + std::to_string(i));
    EXPECT_EQ(body["sni"], "service.internal");
    EXPECT_EQ(body["proto"], "http");
    ports.insert(body["port"].get<int64_t>());
  }
  // Sequential requests reuse their worker's connection: at most one per worker.
  EXPECT_LE(ports.size(), 2u);
  // By address: no SNI (RFC 6066 leaves IP literals out), the certificate's IP entry verified.
  proxy_->signal(SIGTERM);
  proxy_->wait(std::chrono::seconds(10));
  startProxy(config({{"ca_file", cert_}}));
  const auto by_ip = get("/api/drivers/ip");
  ASSERT_EQ(by_ip.status, 200) << by_ip.body;
  EXPECT_EQ(nlohmann::json::parse(by_ip.body)["sni"], "");
}

TEST_F(UpstreamTlsTest, AnUntrustedOrMisnamedCertificateIsA502AndALogLine) {
  auto cfg = config({{"ca_file", other_ca_}, {"server_name", "service.internal"}});
  cfg["upstreams"]["misnamed"] = {{"endpoints", {backend_address_}},
                                  {"tls", {{"ca_file", cert_}, {"server_name", "wrong.internal"}}}};
  cfg["upstreams"]["unverified"] = {{"endpoints", {backend_address_}},
                                    {"tls", {{"insecure", true}}}};
  cfg["routes"].push_back({{"name", "misnamed"},
                           {"match", {{"path", "/api/misnamed/**"}}},
                           {"target", "misnamed"},
                           {"stage", "extracted"}});
  cfg["routes"].push_back({{"name", "unverified"},
                           {"match", {{"path", "/api/unverified/**"}}},
                           {"target", "unverified"},
                           {"stage", "extracted"}});
  startProxy(cfg);
  const auto untrusted = get("/api/drivers/1");
  EXPECT_EQ(untrusted.status, 502);
  EXPECT_NE(untrusted.body.find("failed (tls)"), std::string::npos) << untrusted.body;
  const auto misnamed = get("/api/misnamed/1");
  EXPECT_EQ(misnamed.status, 502);
  EXPECT_TRUE(proxy_->waitForLine("TLS to upstream 'secure'", std::chrono::seconds(5)));
  const auto line = proxy_->waitForLine("TLS to upstream 'misnamed'", std::chrono::seconds(5));
  ASSERT_TRUE(line) << proxy_->output();
  EXPECT_NE(line->find("wrong.internal"), std::string::npos) << *line;
  EXPECT_NE(line->find("certificate not trusted"), std::string::npos) << *line;
  // Only by explicit choice does an unverified upstream serve.
  const auto unverified = get("/api/unverified/1");
  ASSERT_EQ(unverified.status, 200) << unverified.body;
  const auto answer = nlohmann::json::parse(unverified.body);
  EXPECT_EQ(answer["uri"], "/api/unverified/1");
  // The backend never got the requests meant for the untrusted upstreams: this is its first.
  EXPECT_EQ(answer["served"], 1);
}

TEST_F(UpstreamTlsTest, ConfigErrorsNameTheirKey) {
  auto h3 = config({{"ca_file", cert_}});
  h3["upstreams"]["secure"]["protocol"] = "h3";
  auto parsed = ProxyConfig::create(h3);
  ASSERT_FALSE(parsed.ok());
  EXPECT_NE(
      parsed.error().message.find("upstreams.secure.protocol: 'h3' is not \"http1\" or \"h2\""),
      std::string::npos)
      << parsed.error().message;
  parsed = ProxyConfig::create(config({{"ca_file", cert_}, {"insecure", true}}));
  ASSERT_FALSE(parsed.ok());
  EXPECT_NE(parsed.error().message.find("upstreams.secure.tls"), std::string::npos);
  // A CA file that does not load stops the start, naming the upstream and the file.
  const std::string path = dir_.file("bad.json");
  {
    std::ofstream out(path);
    out << config({{"ca_file", dir_.file("missing-ca.pem")}}).dump();
  }
  const auto result = withStderr(STRANGLER_PROXY_BINARY, {"--config", path, "--workers", "1"});
  EXPECT_EQ(result.exit_code, 1);
  EXPECT_NE(result.output.find("upstreams.secure.tls.ca_file '" + dir_.file("missing-ca.pem")),
            std::string::npos)
      << result.output;
}

}  // namespace
}  // namespace strangler::proxy::testing
