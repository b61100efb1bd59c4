// Integration: request and response bodies streamed through the real strangler-proxy binary in
// bounded memory (what is kept for a retry or a shadow copy, what streams, the body limits), one
// client at a time and many at once.
#include <gtest/gtest.h>

#include <Poco/Net/HTTPClientSession.h>
#include <Poco/Net/HTTPRequest.h>
#include <Poco/Net/HTTPResponse.h>
#include <Poco/Net/SocketAddress.h>
#include <Poco/Net/StreamSocket.h>
#include <Poco/StreamCopier.h>

#include <atomic>
#include <random>
#include <set>
#include <thread>

#include "proxy_harness.h"
#include "strangler/testing/figures.h"

namespace strangler::proxy::testing {
namespace {

using nlohmann::json;

uint64_t fnv1a(std::string_view bytes) {
  uint64_t hash = 1469598103934665603ull;
  for (const unsigned char c : bytes)
    hash = (hash ^ c) * 1099511628211ull;
  return hash;
}

class ProxyStreamingTest : public ::testing::Test {
 protected:
  FakeUpstream monolith_{"monolith"};
};

TEST_F(ProxyStreamingTest, A512MiBUploadAndDownloadStreamInBoundedMemory) {
  constexpr uint64_t kSize = 512ull << 20;
  RawUpstream sink("", RawUpstream::Mode::kCountBody);
  RawUpstream source("", RawUpstream::Mode::kStreamBody, kSize);
  json cfg = baseConfig(monolith_);
  cfg["upstreams"]["sink"] = {{"endpoints", {sink.address()}}, {"timeout_ms", 30000}};
  cfg["upstreams"]["source"] = {{"endpoints", {source.address()}}, {"timeout_ms", 30000}};
  cfg["routes"] = json::array({{{"name", "upload"},
                                {"match", {{"path", "/upload"}}},
                                {"target", "sink"},
                                {"stage", "extracted"},
                                {"max_body_bytes", 0}},
                               {{"name", "download"},
                                {"match", {{"path", "/download"}}},
                                {"target", "source"},
                                {"stage", "extracted"}}});
  ProxyProcess proxy(cfg);
  ASSERT_TRUE(proxy.running());
  const Poco::Net::SocketAddress at("127.0.0.1", proxy.port());

  Poco::Net::StreamSocket up(at);
  up.setReceiveTimeout(Poco::Timespan(60, 0));
  const std::string head =
      "PUT /upload HTTP/1.1\r\nHost: a\r\nContent-Length: " + std::to_string(kSize) +
      "\r\nConnection: close\r\n\r\n";
  up.sendBytes(head.data(), static_cast<int>(head.size()));
  const std::string piece(1 << 20, 'u');
  for (uint64_t sent = 0; sent < kSize; sent += piece.size())
    ASSERT_EQ(up.sendBytes(piece.data(), static_cast<int>(piece.size())),
              static_cast<int>(piece.size()));
  std::string answer;
  char buffer[65536];
  for (int n; (n = up.receiveBytes(buffer, sizeof buffer)) > 0;)
    answer.append(buffer, static_cast<size_t>(n));
  EXPECT_EQ(rawStatus(answer), 200) << answer.substr(0, 300);
  EXPECT_EQ(answer.substr(answer.find("\r\n\r\n") + 4), std::to_string(kSize))
      << "the upstream did not get every byte";

  Poco::Net::StreamSocket down(at);
  down.setReceiveTimeout(Poco::Timespan(60, 0));
  const std::string get = "GET /download HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n";
  down.sendBytes(get.data(), static_cast<int>(get.size()));
  uint64_t total = 0;
  std::string start;
  for (int n; (n = down.receiveBytes(buffer, sizeof buffer)) > 0;) {
    if (start.size() < 512) start.append(buffer, static_cast<size_t>(std::min(n, 512)));
    total += static_cast<uint64_t>(n);
  }
  ASSERT_EQ(rawStatus(start), 200) << start;
  const size_t head_size = start.find("\r\n\r\n") + 4;
  EXPECT_EQ(total - head_size, kSize);

  const uint64_t peak = peakRss(proxy.process().pid());
  EXPECT_GT(peak, 0u);
  EXPECT_LT(peak, 64ull << 20) << "the proxy's peak RSS grew with the body size";
  std::printf("proxy peak RSS after 512 MiB up and down: %.1f MiB\n",
              static_cast<double>(peak) / (1 << 20));
}

TEST_F(ProxyStreamingTest, ABodyTooLargeToKeepIsNeitherRetriedNorShadowedAndIsCounted) {
  FakeUpstream service("service");
  json cfg = baseConfig(monolith_);
  addUpstream(cfg, service);
  cfg["limits"] = {{"max_body_bytes", 0}};
  cfg["routes"] = json::array({{{"name", "big"},
                                {"match", {{"path", "/big/**"}}},
                                {"target", "service"},
                                {"stage", "extracted"},
                                {"fallback", true}}});
  ProxyProcess proxy(cfg);
  ASSERT_TRUE(proxy.running());
  // Kept (under 1 MiB): a 5xx from the target falls back to the monolith, body and all.
  service.status = 503;
  const std::string small(100000, 's');
  auto response = proxy.request("PUT", "/big/1", small);
  EXPECT_EQ(response.status, 200);
  EXPECT_EQ(response.json()["upstream"], "monolith");
  ASSERT_EQ(monolith_.count(), 1u);
  EXPECT_EQ(monolith_.requests().at(0).body.size(), small.size());
  // Not kept (over 1 MiB): the target's 5xx is the answer, the monolith never sees it.
  const std::string large(3 << 20, 'l');
  response = proxy.request("PUT", "/big/2", large);
  EXPECT_EQ(response.status, 503);
  EXPECT_EQ(monolith_.count(), 1u);
  EXPECT_GE(service.count(), 2u);
  EXPECT_EQ(service.requests().back().body.size(), large.size());
  EXPECT_EQ(metricValue(proxy, "strangler_proxy_client_events_total{kind=\"body_not_kept\"}"), 1);
}

TEST_F(ProxyStreamingTest, ARoutesShadowMaxBodyBytesSetsWhatIsKept) {
  FakeUpstream service("service");
  json cfg = baseConfig(monolith_);
  addUpstream(cfg, service);
  cfg["routes"] = json::array({{{"name", "small"},
                                {"match", {{"path", "/small/**"}}},
                                {"target", "service"},
                                {"stage", "extracted"},
                                {"fallback", true},
                                {"shadow", {{"max_body_bytes", 1000}}}}});
  ProxyProcess proxy(cfg);
  ASSERT_TRUE(proxy.running());
  service.status = 503;
  EXPECT_EQ(proxy.request("PUT", "/small/1", std::string(900, 'k')).status, 200);
  EXPECT_EQ(monolith_.count(), 1u) << "kept: fell back";
  EXPECT_EQ(proxy.request("PUT", "/small/2", std::string(5000, 'n')).status, 503);
  EXPECT_EQ(monolith_.count(), 1u) << "not kept: no fallback";
  EXPECT_EQ(service.requests().back().body, std::string(5000, 'n'));
}

TEST_F(ProxyStreamingTest, BodyLimitsPerRouteAndAnEarlyAnswerEndsTheConnectionCleanly) {
  json cfg = baseConfig(monolith_);
  cfg["limits"] = {{"max_body_bytes", 1000}};
  cfg["upstreams"]["monolith"]["timeout_ms"] = 3000;
  cfg["routes"] = json::array({{{"name", "roomy"},
                                {"match", {{"path", "/roomy/**"}}},
                                {"target", "monolith"},
                                {"stage", "extracted"},
                                {"max_body_bytes", 100000}}});
  ProxyProcess proxy(cfg);
  ASSERT_TRUE(proxy.running());
  EXPECT_EQ(proxy.request("POST", "/other", std::string(2000, 'x')).status, 413);
  EXPECT_EQ(proxy.request("POST", "/roomy/1", std::string(2000, 'x')).status, 200);
  EXPECT_EQ(proxy.request("POST", "/roomy/1", std::string(200000, 'x')).status, 413);
  // Chunked past the limit: 413 once the limit is crossed, the connection then ends.
  const std::string chunked =
      proxy.raw("POST /other HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3e8\r\n" +
                std::string(1000, 'y') + "\r\n3e8\r\n" + std::string(1000, 'y') + "\r\n0\r\n\r\n");
  EXPECT_EQ(rawStatus(chunked), 413) << chunked.substr(0, 200);
  EXPECT_EQ(monolith_.count(), 1u) << "only the request within its limit reached the monolith";
  // The proxy goes on serving.
  EXPECT_EQ(proxy.get("/after").status, 200);
}

// Many clients at once, each streaming bodies larger than what the proxy keeps, both ways:
// every upload reaches the upstream whole and exactly once (a streamed body is never sent
// again), every download arrives whole, and the proxy's memory does not grow with the bytes
// moved (12 clients x 3 uploads and 3 downloads of 1.5-2.5 MiB: about 130 MiB through it).
TEST_F(ProxyStreamingTest, ManyClientsStreamBodiesBothWaysAtOnceWholeAndExactlyOnce) {
  constexpr int kClients = 12;
  constexpr int kRounds = 3;
  FakeUpstream sink("sink");
  sink.setResponder([](const ReceivedRequest& request) {
    return json{{"bytes", request.body.size()},
                {"hash", std::to_string(fnv1a(request.body))},
                {"seq", request.header("x-seq")}};
  });
  FakeUpstream source("source");
  source.padding = (2u << 20) + 12345;
  source.chunked = true;
  json cfg = baseConfig(monolith_);
  cfg["upstreams"]["sink"] = {{"endpoints", {sink.address()}}, {"timeout_ms", 30000}};
  cfg["upstreams"]["source"] = {{"endpoints", {source.address()}}, {"timeout_ms", 30000}};
  cfg["routes"] = json::array({{{"name", "up"},
                                {"match", {{"path", "/up/**"}}},
                                {"target", "sink"},
                                {"stage", "extracted"},
                                {"max_body_bytes", 0}},
                               {{"name", "down"},
                                {"match", {{"path", "/down/**"}}},
                                {"target", "source"},
                                {"stage", "extracted"}}});
  ProxyProcess proxy(cfg);
  ASSERT_TRUE(proxy.running());

  std::atomic<int> uploads_ok{0};
  std::atomic<int> downloads_ok{0};
  std::atomic<uint64_t> bytes_moved{0};
  std::vector<std::string> failures(kClients);
  std::vector<std::thread> clients;
  for (int c = 0; c < kClients; ++c) {
    clients.emplace_back([&, c] {
      std::mt19937_64 random(static_cast<uint64_t>(c) * 7919 + 1);
      Poco::Net::HTTPClientSession session("127.0.0.1", proxy.port());
      session.setTimeout(Poco::Timespan(30, 0));
      try {
        for (int round = 0; round < kRounds; ++round) {
          const size_t size = (3u << 19) + random() % (1u << 20);
          std::string body(size, '\0');
          for (auto& byte : body)
            byte = static_cast<char>(random());
          const std::string seq = std::to_string(c) + "-" + std::to_string(round);
          Poco::Net::HTTPRequest put(Poco::Net::HTTPRequest::HTTP_PUT, "/up/" + seq,
                                     Poco::Net::HTTPMessage::HTTP_1_1);
          put.set("X-Seq", seq);
          if ((c + round) % 2 == 0) {
            put.setChunkedTransferEncoding(true);
          } else {
            put.setContentLength(static_cast<std::streamsize>(size));
          }
          std::ostream& out = session.sendRequest(put);
          for (size_t at = 0; at < size; at += 64 * 1024)
            out.write(body.data() + at,
                      static_cast<std::streamsize>(std::min<size_t>(64 * 1024, size - at)));
          Poco::Net::HTTPResponse answer;
          std::string text;
          Poco::StreamCopier::copyToString(session.receiveResponse(answer), text);
          const json got = json::parse(text, nullptr, false);
          if (answer.getStatus() != 200 || got.is_discarded() || got.value("bytes", 0u) != size ||
              got.value("hash", "") != std::to_string(fnv1a(body)) || got.value("seq", "") != seq) {
            failures[c] += "upload " + seq + ": " + std::to_string(answer.getStatus()) + " " +
                           text.substr(0, 200) + "\n";
          } else {
            ++uploads_ok;
            bytes_moved += size;
          }

          Poco::Net::HTTPRequest get(Poco::Net::HTTPRequest::HTTP_GET, "/down/" + seq,
                                     Poco::Net::HTTPMessage::HTTP_1_1);
          session.sendRequest(get);
          Poco::Net::HTTPResponse download;
          std::string payload;
          Poco::StreamCopier::copyToString(session.receiveResponse(download), payload);
          const json parsed = json::parse(payload, nullptr, false);
          if (download.getStatus() != 200 || parsed.is_discarded() ||
              parsed.value("padding", "").size() != source.padding.load()) {
            failures[c] += "download " + seq + ": " + std::to_string(download.getStatus()) + " " +
                           std::to_string(payload.size()) + " bytes\n";
          } else {
            ++downloads_ok;
            bytes_moved += payload.size();
          }
        }
      } catch (const std::exception& error) {
        failures[c] += std::string("exception: ") + error.what() + "\n";
      }
    });
  }
  for (auto& client : clients)
    client.join();
  for (int c = 0; c < kClients; ++c)
    EXPECT_EQ(failures[c], "") << "client " << c;
  EXPECT_EQ(uploads_ok.load(), kClients * kRounds);
  EXPECT_EQ(downloads_ok.load(), kClients * kRounds);
  // Exactly once: no upload reached the sink twice or not at all.
  std::multiset<std::string> seen;
  for (const auto& request : sink.requests())
    seen.insert(request.header("x-seq"));
  EXPECT_EQ(seen.size(), static_cast<size_t>(kClients * kRounds));
  for (const auto& seq : seen)
    EXPECT_EQ(seen.count(seq), 1u) << seq;

  const uint64_t peak = peakRss(proxy.process().pid());
  EXPECT_GT(peak, 0u);
  EXPECT_LT(peak, 64ull << 20) << "the proxy's memory grew with the bytes streamed";
  strangler::testing::reportFigure(
      "proxy.streaming.concurrent_peak_rss_mib", static_cast<double>(peak) / (1 << 20), "< 64",
      std::to_string(kClients) + " clients streaming " + std::to_string(bytes_moved.load() >> 20) +
          " MiB both ways at once");
}

}  // namespace
}  // namespace strangler::proxy::testing
