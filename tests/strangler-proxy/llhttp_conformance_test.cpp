// Conformance against a parser the proxy does not use: Node's HTTP server (llhttp, strict) is
// the upstream. Every request the proxy forwards, for the smuggling suite, the request path
// fuzzer's seeds and seeded mutations of them, must be framed by llhttp exactly as the client's
// bytes frame with http_parser: same requests in the same order (same method and body), one
// Host each, no trailer fields, and nothing llhttp refuses. Two parsers disagreeing about where
// a request ends is what request smuggling needs; here the next hop is a different one.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>

#include <Poco/Base64Decoder.h>

#include "http_framer.h"
#include "proxy_harness.h"
#include "request_path_config.h"
#include "strangler/testing/figures.h"

namespace strangler::proxy::testing {
namespace {

using nlohmann::json;

constexpr std::string_view kUpstreamMark = "\n@@upstream@@\n";

std::string readFile(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

std::string base64Decode(const std::string& text) {
  std::istringstream in(text);
  Poco::Base64Decoder decoder(in);
  return std::string(std::istreambuf_iterator<char>(decoder), std::istreambuf_iterator<char>());
}

// The inputs: the smuggling suite, the fuzzer's seeds (the client's part), and mutations.
std::vector<std::string> inputs() {
  std::vector<std::string> all;
  std::ifstream cases(STRANGLER_SMUGGLING_CASES);
  for (const auto& entry : json::parse(cases)["cases"])
    all.push_back(entry["raw"]);
  std::vector<std::filesystem::path> seeds;
  for (const auto& file : std::filesystem::directory_iterator(STRANGLER_REQUEST_PATH_SEEDS))
    seeds.push_back(file.path());
  std::sort(seeds.begin(), seeds.end());
  std::vector<std::string> well_formed;  // the seeds that are not smuggling attempts
  for (const auto& path : seeds) {
    std::string bytes = readFile(path);
    if (const size_t mark = bytes.find(kUpstreamMark); mark != std::string::npos)
      bytes.resize(mark);
    // HTTP/2 frames (a connection that opens with the preface): checked by the h2 tests.
    if (bytes.rfind("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", 0) == 0) continue;
    if (path.filename().string().rfind("smuggling-", 0) != 0) well_formed.push_back(bytes);
    all.push_back(bytes);
  }
  // Mutations of the well-formed seeds: bytes flipped, framing tokens spliced in, cut short.
  static const std::vector<std::string> kTokens = {"\r\n",
                                                   "\n",
                                                   " ",
                                                   "\t",
                                                   ":",
                                                   ",",
                                                   "\r\nTransfer-Encoding: chunked",
                                                   "\r\nContent-Length: 3",
                                                   "0\r\n\r\n",
                                                   "\r\n\r\n",
                                                   "chunked",
                                                   "\x00",
                                                   "HTTP/1.0"};
  std::mt19937 random(20261207);
  for (int i = 0; i < 1000; ++i) {
    std::string bytes = well_formed[random() % well_formed.size()];
    if (bytes.empty()) continue;
    const int edits = 1 + static_cast<int>(random() % 2);
    for (int e = 0; e < edits && !bytes.empty(); ++e) {
      const size_t at = random() % bytes.size();
      const unsigned kind = random() % 7;  // cut short less often than the others
      if (kind < 2) {
        bytes[at] = static_cast<char>(random() % 256);
      } else if (kind < 4) {
        bytes.insert(at, kTokens[random() % kTokens.size()]);
      } else if (kind < 6) {
        bytes.erase(at, 1 + random() % 4);
      } else {
        bytes.resize(at);
      }
    }
    all.push_back(bytes);
  }
  return all;
}

class LlhttpNextHopTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!std::filesystem::exists(STRANGLER_NODE)) {
      if (std::getenv("STRANGLER_REQUIRE_NODE") != nullptr)
        FAIL() << "STRANGLER_REQUIRE_NODE is set but node is missing";
      GTEST_SKIP() << "node is not installed (scripts/install-deps.sh installs it)";
    }
    node_ = common::ChildProcess::start(STRANGLER_NODE, {STRANGLER_LLHTTP_UPSTREAM});
    const auto line = node_->waitForLine("llhttp-upstream listening on", std::chrono::seconds(10));
    ASSERT_TRUE(line.has_value()) << node_->output();
    node_port_ = static_cast<uint16_t>(std::stoi(line->substr(line->rfind(' ') + 1)));
  }

  // The events node printed since the last call, up to the mark of input `n`.
  std::vector<json> eventsUpTo(int n) {
    strangler::testing::rawExchange(
        "127.0.0.1", node_port_,
        "GET /__mark/" + std::to_string(n) + " HTTP/1.1\r\nHost: m\r\nConnection: close\r\n\r\n");
    const std::string needle = "{\"mark\":" + std::to_string(n) + "}";
    EXPECT_TRUE(node_->waitForLine(needle, std::chrono::seconds(5)).has_value());
    const std::string output = node_->output();
    const size_t end = output.find(needle, consumed_);
    std::vector<json> events;
    if (end == std::string::npos) return events;
    std::istringstream lines(output.substr(consumed_, end - consumed_));
    consumed_ = end + needle.size();
    for (std::string line; std::getline(lines, line);) {
      if (!line.empty() && line.front() == '{') events.push_back(json::parse(line));
    }
    return events;
  }

  std::unique_ptr<common::ChildProcess> node_;
  uint16_t node_port_ = 0;
  size_t consumed_ = 0;
};

TEST_F(LlhttpNextHopTest, EveryForwardedRequestIsFramedByLlhttpAsTheClientFramedIt) {
  const std::string node = "127.0.0.1:" + std::to_string(node_port_);
  // The fuzzer's routes but the shadow one (its copies would reach llhttp too, out of order).
  json cfg = strangler::fuzz::requestPathConfig(node, false);
  cfg["admin"] = {{"listen", "127.0.0.1:0"}, {"token_env", "STRANGLER_TEST_ADMIN_TOKEN"}};
  ProxyProcess proxy(cfg);
  ASSERT_TRUE(proxy.running());

  const std::vector<std::string> all = inputs();
  size_t forwarded = 0;
  size_t refused_by_proxy = 0;
  for (size_t i = 0; i < all.size(); ++i) {
    const std::string& bytes = all[i];
    strangler::fuzz::Framer sent(HTTP_REQUEST);
    sent.feed(bytes);
    const std::string answer = proxy.raw(bytes);
    if (rawStatus(answer) >= 400 && rawStatus(answer) < 500) ++refused_by_proxy;
    const std::vector<json> events = eventsUpTo(static_cast<int>(i));
    std::vector<strangler::fuzz::Message> received;
    for (const json& event : events) {
      ASSERT_FALSE(event.contains("refused"))
          << "llhttp refused what the proxy forwarded (" << event["refused"] << ") for input " << i
          << ": " << json(bytes).dump();
      const json& request = event["request"];
      EXPECT_EQ(request["hosts"], 1) << "input " << i << ": " << json(bytes).dump();
      EXPECT_EQ(request["trailers"], 0) << "input " << i << ": " << json(bytes).dump();
      strangler::fuzz::Message message;
      message.method = request["method"].get<std::string>();
      message.body = base64Decode(request["body"]);
      received.push_back(std::move(message));
    }
    forwarded += received.size();
    const auto* unsent = strangler::fuzz::unsentRequest(received, sent.messages);
    ASSERT_EQ(unsent, nullptr) << "llhttp framed a request the client did not send ("
                               << unsent->method << ", " << unsent->body.size()
                               << "-byte body) for input " << i << ": " << json(bytes).dump();
  }
  // The run must have meant something: many requests went through, many were refused.
  EXPECT_GT(forwarded, 150u);
  EXPECT_GT(refused_by_proxy, 300u);
  strangler::testing::reportFigure("proxy.llhttp_next_hop.inputs", static_cast<double>(all.size()),
                                   "-", "raw inputs replayed through the proxy to Node's llhttp");
  strangler::testing::reportFigure(
      "proxy.llhttp_next_hop.forwarded", static_cast<double>(forwarded), "-",
      "requests llhttp framed exactly as the client sent them (" +
          std::to_string(refused_by_proxy) + " inputs answered 4xx; 0 refused by llhttp)");
  EXPECT_EQ(proxy.get("/m/after").status, 200);
}

}  // namespace
}  // namespace strangler::proxy::testing
