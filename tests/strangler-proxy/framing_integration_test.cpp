// Integration: strict HTTP/1.1 framing at the edge (RFC 9112) and the connection limits, with
// the real strangler-proxy binary, raw client bytes and upstreams that answer anything.
#include <gtest/gtest.h>

#include <Poco/Net/SocketAddress.h>
#include <Poco/Net/StreamSocket.h>

#include <csignal>
#include <filesystem>
#include <fstream>
#include <random>
#include <thread>

#include "proxy_harness.h"

namespace strangler::proxy::testing {
namespace {

using nlohmann::json;
using std::chrono::milliseconds;

size_t lineCount(const std::string& path) {
  std::ifstream in(path);
  size_t lines = 0;
  for (std::string line; std::getline(in, line);)
    ++lines;
  return lines;
}

// `config` with one upstream per raw upstream given and a route /NAME/** extracted to each.
json routedTo(json config,
              const std::vector<std::pair<std::string, const RawUpstream*>>& upstreams) {
  config["routes"] = json::array();
  for (const auto& [name, upstream] : upstreams) {
    config["upstreams"][name] = {{"endpoints", {upstream->address()}}, {"timeout_ms", 2000}};
    config["routes"].push_back({{"name", name},
                                {"match", {{"path", "/" + name + "/**"}}},
                                {"target", name},
                                {"stage", "extracted"}});
  }
  return config;
}

class ProxyFramingTest : public ::testing::Test {
 protected:
  FakeUpstream monolith_{"monolith"};
};

TEST_F(ProxyFramingTest, ChunkedTrailersAreDroppedNeverMergedIntoTheHead) {
  ProxyProcess proxy(baseConfig(monolith_));
  ASSERT_TRUE(proxy.running());
  const std::string answer = proxy.raw(
      "POST /api/x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
      "5\r\nhello\r\n0\r\nX-Checksum: abc\r\nX-Injected: yes\r\n\r\n");
  EXPECT_EQ(rawStatus(answer), 200) << answer;
  ASSERT_EQ(monolith_.count(), 1u);
  const auto received = monolith_.requests().at(0);
  EXPECT_EQ(received.body, "hello");
  EXPECT_FALSE(received.has("x-checksum")) << "a trailer reached the upstream as a header";
  EXPECT_FALSE(received.has("x-injected"));
  EXPECT_EQ(received.header("transfer-encoding"), "chunked");  // streamed, trailers cut
  EXPECT_EQ(metricValue(proxy, "strangler_proxy_client_events_total{kind=\"trailers_dropped\"}"),
            1);
}

TEST_F(ProxyFramingTest, CodingsBeforeChunkedPassOnWithTheRechunkedBody) {
  RawUpstream raw("HTTP/1.1 204 No Content\r\n\r\n");
  json cfg = baseConfig(monolith_);
  cfg["upstreams"]["monolith"]["endpoints"] = {raw.address()};
  ProxyProcess proxy(cfg);
  ASSERT_TRUE(proxy.running());
  const std::string answer = proxy.raw(
      "POST /z HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\nConnection: "
      "close\r\n\r\n3\r\nabc\r\n0\r\n\r\n");
  EXPECT_EQ(rawStatus(answer), 204) << answer;
  const std::string received = raw.received();
  EXPECT_NE(received.find("\r\nTransfer-Encoding: gzip, chunked\r\n"), std::string::npos)
      << received;
  EXPECT_EQ(received.find("Content-Length"), std::string::npos) << received;
  // A coding nobody registered is 501 and reaches no upstream. Found by the request path
  // fuzzer: "Transfer-Encoding: chun" and "Transfer-Encoding: chunked" went on as
  // "chun, chunked", which http_parser, one hop on, refuses (it refuses it in one field too).
  const size_t before = raw.connections();
  for (const auto& [codings, status] :
       std::vector<std::pair<std::string, int>>{{"x-custom, chunked", 501},
                                                {"gzip, br2, chunked", 501},
                                                {"chun\r\nTransfer-Encoding: chunked", 501},
                                                {"chun, chunked", 400}}) {
    const std::string refused =
        proxy.raw("POST /z HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: " + codings +
                  "\r\n\r\n3\r\nabc\r\n0\r\n\r\n");
    EXPECT_EQ(rawStatus(refused), status) << codings << ": " << refused;
  }
  EXPECT_EQ(raw.connections(), before);
}

TEST_F(ProxyFramingTest, AnHttp10RequestWithoutHostGetsTheUpstreamsAddress) {
  ProxyProcess proxy(baseConfig(monolith_));
  ASSERT_TRUE(proxy.running());
  const std::string answer = proxy.raw("GET /a HTTP/1.0\r\n\r\n");
  EXPECT_EQ(rawStatus(answer), 200) << answer;
  ASSERT_EQ(monolith_.count(), 1u);
  const auto received = monolith_.requests().at(0);
  EXPECT_EQ(received.header("host"), monolith_.address());
  EXPECT_FALSE(received.has("x-forwarded-host"));
  // HTTP/1.1 still needs one.
  EXPECT_EQ(rawStatus(proxy.raw("GET /a HTTP/1.1\r\n\r\n")), 400);
}

TEST_F(ProxyFramingTest, AnAbsoluteFormTargetsAuthorityReplacesTheHostHeader) {
  ProxyProcess proxy(baseConfig(monolith_));
  ASSERT_TRUE(proxy.running());
  std::string answer =
      proxy.raw("GET http://api.example:81/p?q=1 HTTP/1.1\r\nHost: evil.example\r\n\r\n");
  EXPECT_EQ(rawStatus(answer), 200) << answer;
  answer = proxy.raw("GET http://api.example?x=1 HTTP/1.1\r\nHost: api.example\r\n\r\n");
  EXPECT_EQ(rawStatus(answer), 200) << answer;
  ASSERT_EQ(monolith_.count(), 2u);
  const auto first = monolith_.requests().at(0);
  EXPECT_EQ(first.header("host"), "api.example:81");
  EXPECT_EQ(first.header("x-forwarded-host"), "api.example:81");
  EXPECT_EQ(first.uri, "/p?q=1");
  EXPECT_EQ(monolith_.requests().at(1).uri, "/?x=1");
  EXPECT_EQ(rawStatus(proxy.raw("GET http://user@api.example/p HTTP/1.1\r\nHost: a\r\n\r\n")), 400);
  EXPECT_EQ(rawStatus(proxy.raw("GET / HTTP/1.1\r\nHost: a b\r\n\r\n")), 400);
  EXPECT_EQ(monolith_.count(), 2u);
}

TEST_F(ProxyFramingTest, ObsFoldIsRefusedAndBodiesMayHoldAnything) {
  ProxyProcess proxy(baseConfig(monolith_));
  ASSERT_TRUE(proxy.running());
  const std::string answer =
      proxy.raw("GET /a HTTP/1.1\r\nHost: a\r\nX-Long: part1\r\n part2\r\nX-B: 1\r\n\r\n");
  EXPECT_EQ(rawStatus(answer), 400) << answer;
  EXPECT_NE(answer.find("obs-fold"), std::string::npos) << answer;
  EXPECT_EQ(rawStatus(proxy.raw("GET /a HTTP/1.1\r\n Host: a\r\n\r\n")), 400);
  EXPECT_EQ(monolith_.count(), 0u);
  EXPECT_EQ(metricValue(proxy, "strangler_proxy_client_events_total{kind=\"obs_fold\"}"), 2);
  // The same bytes in a body are data; a pipelined request after a fold-free one is read too.
  const std::string body = "line\r\n folded\r\n\tnot a header";
  const std::string both =
      proxy.raw("POST /b HTTP/1.1\r\nHost: a\r\nContent-Length: " + std::to_string(body.size()) +
                "\r\n\r\n" + body + "GET /c HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n");
  EXPECT_EQ(rawStatus(both), 200) << both;
  ASSERT_EQ(monolith_.count(), 2u);
  EXPECT_EQ(monolith_.requests().at(0).body, body);
  EXPECT_EQ(monolith_.requests().at(1).uri, "/c");
}

TEST_F(ProxyFramingTest, AnUpstreamAnswerWithABadHeaderIs502AndCounted) {
  RawUpstream spaced("HTTP/1.1 200 OK\r\nBad Name: x\r\nContent-Length: 2\r\n\r\nok");
  RawUpstream control("HTTP/1.1 200 OK\r\nX-A: a\x01z\r\nContent-Length: 2\r\n\r\nok");
  RawUpstream fine("HTTP/1.1 200 OK\r\nX-Fine: yes\r\nContent-Length: 2\r\n\r\nok");
  const json cfg = routedTo(baseConfig(monolith_),
                            {{"spaced", &spaced}, {"control", &control}, {"fine", &fine}});
  ProxyProcess proxy(cfg);
  ASSERT_TRUE(proxy.running());
  EXPECT_EQ(proxy.get("/spaced/1").status, 502);
  EXPECT_EQ(proxy.get("/control/1").status, 502);
  const auto ok = proxy.get("/fine/1");
  EXPECT_EQ(ok.status, 200);
  EXPECT_EQ(ok.body, "ok");
  EXPECT_EQ(
      metricValue(proxy,
                  "strangler_proxy_upstream_errors_total{upstream=\"spaced\",kind=\"bad_header\"}"),
      1);
  // The parser itself refuses a control character in a value ("protocol"); either way counted.
  EXPECT_EQ(
      metricValue(
          proxy,
          "strangler_proxy_upstream_errors_total{upstream=\"control\",kind=\"bad_header\"}") +
          metricValue(
              proxy,
              "strangler_proxy_upstream_errors_total{upstream=\"control\",kind=\"protocol\"}"),
      1);
  // The proxy goes on serving.
  EXPECT_EQ(proxy.get("/other").status, 200);
}

// Found by fuzz/request_path_fuzzer.cpp: http_parser reads a 1xx answer without a length to
// the close, and those bytes reached the client raw, as if they were the answer.
TEST_F(ProxyFramingTest, AnInterimAnswerHasNoBodyAndOnlyTheFinalAnswerIsRelayed) {
  RawUpstream hints(
      "HTTP/1.1 103 Early Hints\r\nLink: </a.css>\r\n\r\n"
      "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
  RawUpstream junk("HTTP/1.1 199 Odd\r\nX-A: 1\r\n\r\nnot an answer\r\n\r\n");
  const json cfg = routedTo(baseConfig(monolith_), {{"hints", &hints}, {"junk", &junk}});
  ProxyProcess proxy(cfg);
  ASSERT_TRUE(proxy.running());
  const std::string relayed =
      proxy.raw("GET /hints/1 HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n");
  EXPECT_EQ(rawStatus(relayed), 200) << relayed;
  // The proxy's own head (with its debug header), not the upstream's bytes passed through.
  EXPECT_NE(relayed.find("X-Strangler-Upstream: hints"), std::string::npos) << relayed;
  EXPECT_EQ(relayed.find("103"), std::string::npos) << relayed;
  EXPECT_EQ(relayed.substr(relayed.size() - 2), "ok");
  const std::string refused =
      proxy.raw("GET /junk/1 HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n");
  EXPECT_EQ(rawStatus(refused), 502) << refused;
  EXPECT_EQ(refused.find("not an answer"), std::string::npos) << refused;
}

// Found by the request path fuzzer: a 204 relayed with its Content-Length made a client parser
// (http_parser) read the next answer's first bytes as its body.
TEST_F(ProxyFramingTest, NoContentAndNotModifiedAnswersAreRelayedWithoutAContentLength) {
  RawUpstream empty("HTTP/1.1 204 No Content\r\nContent-Length: 3\r\nX-A: 1\r\n\r\n");
  RawUpstream cached("HTTP/1.1 304 Not Modified\r\nContent-Length: 10\r\nETag: \"v1\"\r\n\r\n");
  const json cfg = routedTo(baseConfig(monolith_), {{"empty", &empty}, {"cached", &cached}});
  ProxyProcess proxy(cfg);
  ASSERT_TRUE(proxy.running());
  for (const char* path : {"/empty/1", "/cached/1"}) {
    // Two requests on one connection: the second answer must be framed as the second.
    const std::string answers =
        proxy.raw(std::string("GET ") + path + " HTTP/1.1\r\nHost: a\r\n\r\nGET /x HTTP/1.1\r\n" +
                  "Host: a\r\nConnection: close\r\n\r\n");
    EXPECT_EQ(answers.find("Content-Length: 3\r\n"), std::string::npos) << answers;
    EXPECT_EQ(answers.find("Content-Length: 10\r\n"), std::string::npos) << answers;
    const size_t second = answers.find("\r\n\r\nHTTP/1.1 200 OK\r\n");
    EXPECT_NE(second, std::string::npos) << answers;
  }
}

TEST_F(ProxyFramingTest, ConnectionsPastTheLimitGet503AndTheLimitFreesUp) {
  json cfg = baseConfig(monolith_);
  cfg["limits"] = {{"max_connections", 2}};
  ProxyProcess proxy(cfg);
  ASSERT_TRUE(proxy.running());
  const Poco::Net::SocketAddress at("127.0.0.1", proxy.port());
  const std::string request = "GET /held HTTP/1.1\r\nHost: a\r\n\r\n";
  std::vector<std::unique_ptr<Poco::Net::StreamSocket>> held;
  for (int i = 0; i < 2; ++i) {
    auto socket = std::make_unique<Poco::Net::StreamSocket>(at);
    socket->setReceiveTimeout(Poco::Timespan(5, 0));
    socket->sendBytes(request.data(), static_cast<int>(request.size()));
    char buffer[4096];
    const int n = socket->receiveBytes(buffer, sizeof buffer);
    ASSERT_GT(n, 0);
    EXPECT_EQ(rawStatus(std::string(buffer, static_cast<size_t>(n))), 200);
    held.push_back(std::move(socket));
  }
  const std::string refused = proxy.raw("GET /more HTTP/1.1\r\nHost: a\r\n\r\n");
  EXPECT_EQ(rawStatus(refused), 503) << refused;
  EXPECT_NE(refused.find("too_many_connections"), std::string::npos) << refused;
  EXPECT_GE(metricValue(proxy, "strangler_proxy_client_events_total{kind=\"connection_refused\"}"),
            1);
  // The two held connections still work, and closing one makes room.
  held[0]->sendBytes(request.data(), static_cast<int>(request.size()));
  char buffer[4096];
  const int n = held[0]->receiveBytes(buffer, sizeof buffer);
  ASSERT_GT(n, 0);
  EXPECT_EQ(rawStatus(std::string(buffer, static_cast<size_t>(n))), 200);
  held[1]->close();
  EXPECT_TRUE(waitFor([&] { return rawStatus(proxy.raw(request)) == 200; }));
}

TEST_F(ProxyFramingTest, Sigusr1ReopensTheAccessLogAfterARotation) {
  strangler::testing::TempDir dir;
  const std::string path = dir.file("access.log");
  json cfg = baseConfig(monolith_);
  cfg["access_log"] = path;
  ProxyProcess proxy(cfg);
  ASSERT_TRUE(proxy.running());
  EXPECT_EQ(proxy.get("/before").status, 200);
  ASSERT_TRUE(waitFor([&] { return lineCount(path) == 1; }));
  std::filesystem::rename(path, path + ".1");
  proxy.process().signal(SIGUSR1);
  ASSERT_TRUE(waitFor([&] { return std::filesystem::exists(path); }))
      << "SIGUSR1 did not reopen the log";
  EXPECT_EQ(proxy.get("/after").status, 200);
  ASSERT_TRUE(waitFor([&] { return lineCount(path) == 1; }));
  EXPECT_EQ(lineCount(path + ".1"), 1u);
  std::ifstream in(path);
  std::string line;
  std::getline(in, line);
  EXPECT_EQ(json::parse(line)["target"], "/after");
  EXPECT_TRUE(json::parse(line)["error"].is_null());
  // A refused request is logged with the reason it was refused.
  EXPECT_EQ(rawStatus(proxy.raw("GET /f HTTP/1.1\r\nHost: a\r\nX: 1\r\n 2\r\n\r\n")), 400);
  ASSERT_TRUE(waitFor([&] { return lineCount(path) == 2; }));
  std::getline(in, line);
  const json refused = json::parse(line);
  EXPECT_EQ(refused["status"], 400);
  EXPECT_EQ(refused["error"], "bad_request");
  EXPECT_NE(refused["reason"].get<std::string>().find("obs-fold"), std::string::npos) << line;
  EXPECT_TRUE(proxy.process().wait(milliseconds(50)) == std::nullopt) << "the proxy exited";
}

// The raw-bytes suite in data/smuggling_cases.json: each request framed ambiguously gets its
// status and reaches no upstream; the proxy serves on after all of them.
TEST_F(ProxyFramingTest, SmugglingPayloadsAreRefusedAndReachNoUpstream) {
  std::ifstream in(STRANGLER_SMUGGLING_CASES);
  ASSERT_TRUE(in.good());
  const json suite = json::parse(in);
  ASSERT_GE(suite["cases"].size(), 20u);
  ProxyProcess proxy(baseConfig(monolith_));
  ASSERT_TRUE(proxy.running());
  for (const auto& one : suite["cases"]) {
    const std::string answer = proxy.raw(one["raw"].get<std::string>());
    EXPECT_EQ(rawStatus(answer), one["expect"].get<int>())
        << one["name"].get<std::string>() << ": " << answer.substr(0, 200);
    EXPECT_EQ(answer.find("HTTP/1.1 200"), std::string::npos) << one["name"].get<std::string>();
    EXPECT_EQ(monolith_.count(), 0u) << one["name"].get<std::string>() << " reached the upstream";
  }
  EXPECT_EQ(proxy.get("/still-serving").status, 200);
}

// A bounded, seeded fuzz of the request path through the real proxy: valid requests (plain,
// Content-Length, chunked, pipelined) mutated byte by byte, each on a connection of its own.
// Whatever the proxy does with one, it must answer or close, keep serving, and never make the
// upstream see more requests than the proxy relayed answers for (a request smuggled past the
// proxy's framing would show as an extra request upstream).
TEST_F(ProxyFramingTest, MutatedRequestsNeverCrashTheProxyOrSmuggleARequest) {
  const std::vector<std::string> seeds = {
      "GET /a?x=1 HTTP/1.1\r\nHost: a\r\nX-A: b\r\n\r\n",
      "POST /b HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello",
      "POST /c HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
      "GET /d HTTP/1.1\r\nHost: a\r\n\r\nGET /e HTTP/1.1\r\nHost: a\r\n\r\n",
      "POST /f HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nabcGET /g HTTP/1.1\r\nHost: "
      "a\r\n\r\n",
      "GET http://h.example/i HTTP/1.1\r\nHost: a\r\nConnection: keep-alive\r\n\r\n",
      "PUT /j HTTP/1.0\r\nContent-Length: 2\r\n\r\nok"};
  const std::string alphabet = "\r\n :\t0123456789abcdefABCDEF-,;\"\\/?#%\x00\x7f\xff";
  ProxyProcess proxy(baseConfig(monolith_));
  ASSERT_TRUE(proxy.running());
  std::mt19937 random(20261207);
  size_t relayed_total = 0, refused = 0;
  constexpr int kInputs = 600;
  for (int i = 0; i < kInputs; ++i) {
    std::string input = seeds[random() % seeds.size()];
    const int edits = 1 + static_cast<int>(random() % 4);
    for (int e = 0; e < edits && !input.empty(); ++e) {
      const size_t at = random() % input.size();
      const char c = alphabet[random() % alphabet.size()];
      switch (random() % 4) {
        case 0:
          input[at] = c;
          break;  // replace
        case 1:
          input.insert(input.begin() + at, c);
          break;  // insert
        case 2:
          input.erase(at, 1);
          break;    // delete
        default: {  // duplicate a line
          const size_t start = input.rfind('\n', at);
          const size_t end = input.find('\n', at);
          if (start != std::string::npos && end != std::string::npos && end > start)
            input.insert(end + 1, input.substr(start + 1, end - start));
        }
      }
    }
    const size_t before = monolith_.count();
    const std::string answer = proxy.raw(input);
    size_t relayed = 0;
    for (size_t at = answer.find("X-Upstream: "); at != std::string::npos;
         at = answer.find("X-Upstream: ", at + 1))
      ++relayed;
    const size_t seen = monolith_.count() - before;
    EXPECT_LE(seen, relayed) << "the upstream saw a request the proxy did not answer for; input: "
                             << nlohmann::json(input).dump();
    relayed_total += relayed;
    if (rawStatus(answer) >= 400 && rawStatus(answer) < 500) ++refused;
  }
  // The mutations must exercise both paths, or the property above says nothing.
  EXPECT_GT(relayed_total, static_cast<size_t>(kInputs / 10));
  EXPECT_GT(refused, static_cast<size_t>(kInputs / 10));
  EXPECT_EQ(proxy.get("/still-serving").status, 200);
  EXPECT_TRUE(proxy.process().wait(milliseconds(10)) == std::nullopt) << "the proxy exited";
  std::printf("mutated requests: %d, answers relayed from the upstream: %zu, refused 4xx: %zu\n",
              kInputs, relayed_total, refused);
}

}  // namespace
}  // namespace strangler::proxy::testing
