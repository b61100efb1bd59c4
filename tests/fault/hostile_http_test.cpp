// Abuse: hostile HTTP against the real proxy — malformed request lines, oversized heads,
// conflicting framing, obs-fold, slow clients and path spellings that try to reach a route
// they do not belong to. The proxy must answer the right 4xx, forward nothing ambiguous, never
// route a spelling past its route, keep serving everyone else, and stay up.
#include <gtest/gtest.h>

#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cctype>
#include <iostream>
#include <set>

#include "fault_support.h"
#include "proxy_harness.h"

namespace strangler::fault {
namespace {

using nlohmann::json;
using proxy::testing::FakeUpstream;
using proxy::testing::ProxyProcess;
using proxy::testing::rawStatus;
using std::chrono::milliseconds;

constexpr int kHeaderTimeoutMs = 1000;
constexpr int kMaxHeaderBytes = 8192;

// How a backend that is lenient about paths could read one: '\' as '/', every escape decoded,
// "..;x" as ".." (servlet containers), repeated '/' folded, dot segments resolved.
std::string lenientBackendPath(const std::string& target) {
  const std::string path = target.substr(0, target.find('?'));
  std::string decoded;
  for (size_t i = 0; i < path.size(); ++i) {
    if (path[i] == '%' && i + 2 < path.size() && std::isxdigit(path[i + 1]) &&
        std::isxdigit(path[i + 2])) {
      decoded += static_cast<char>(std::stoi(path.substr(i + 1, 2), nullptr, 16));
      i += 2;
    } else {
      decoded += path[i] == '\\' ? '/' : path[i];
    }
  }
  std::vector<std::string> segments;
  size_t start = 0;
  while (start <= decoded.size()) {
    size_t slash = decoded.find('/', start);
    if (slash == std::string::npos) slash = decoded.size();
    std::string segment = decoded.substr(start, slash - start);
    const std::string bare = segment.substr(0, segment.find(';'));
    if (bare == "." || bare == "..") segment = bare;
    if (segment == "..") {
      if (!segments.empty()) segments.pop_back();
    } else if (!segment.empty() && segment != ".") {
      segments.push_back(segment);
    }
    start = slash + 1;
  }
  std::string out;
  for (const auto& segment : segments)
    out += "/" + segment;
  return out.empty() ? "/" : out;
}

// The upstream that owns a path in this test's route table.
std::string owner(const std::string& path) {
  const auto under = [&](const std::string& prefix) {
    return path == prefix || path.rfind(prefix + "/", 0) == 0;
  };
  if (under("/admin-private")) return "private";
  if (under("/public")) return "public";
  return "monolith";
}

class HostileHttpTest : public ::testing::Test {
 protected:
  void SetUp() override {
    json config = proxy::testing::baseConfig(monolith_);
    proxy::testing::addUpstream(config, public_);
    proxy::testing::addUpstream(config, private_);
    config["limits"] = {{"header_timeout_ms", kHeaderTimeoutMs},
                        {"max_header_bytes", kMaxHeaderBytes}};
    config["routes"] = json::array({{{"name", "private"},
                                     {"match", {{"path", "/admin-private/**"}}},
                                     {"target", "private"},
                                     {"stage", "extracted"}},
                                    {{"name", "public"},
                                     {"match", {{"path", "/public/**"}}},
                                     {"target", "public"},
                                     {"stage", "extracted"}}});
    proxy_ = std::make_unique<ProxyProcess>(config);
    ASSERT_TRUE(proxy_->running());
  }

  void TearDown() override {
    if (!proxy_ || !proxy_->running()) return;
    const bool alive = !proxy_->process().wait(milliseconds(0)).has_value();
    const bool healthy = alive && proxy_->admin("GET", "/healthz").status == 200;
    reportFigure("hostile.crashes." +
                     std::string(::testing::UnitTest::GetInstance()->current_test_info()->name()),
                 healthy ? 0 : 1, "0", "proxy down (exited, or /healthz not 200) after the test");
    EXPECT_TRUE(alive) << "the proxy died";
    EXPECT_TRUE(healthy) << "the proxy no longer answers /healthz";
  }

  size_t forwarded() const { return monolith_.count() + public_.count() + private_.count(); }

  FakeUpstream monolith_{"monolith"};
  FakeUpstream public_{"public"};
  FakeUpstream private_{"private"};
  std::unique_ptr<ProxyProcess> proxy_;
};

struct HostileCase {
  std::string name;
  std::string bytes;
  std::set<int> statuses;  ///< acceptable answers
};

std::string manyHeaders(const std::string& head, int count) {
  std::string bytes = head;
  for (int i = 0; i < count; ++i)
    bytes += "X-" + std::to_string(i) + ": v\r\n";
  return bytes + "\r\n";
}

TEST_F(HostileHttpTest, MalformedAndAmbiguousRequestsAreRefusedAndNeverForwarded) {
  const std::string host = "Host: fault.test\r\n";
  const std::string get = "GET /public/x HTTP/1.1\r\n" + host;
  const std::string post = "POST /public/x HTTP/1.1\r\n" + host;
  const std::string nul("X-A: b\0c\r\n", 10);
  const std::vector<HostileCase> cases = {
      {"request line without target", "GET\r\n\r\n", {400}},
      {"request line with extra token", "GET /public/x HTTP/1.1 extra\r\n" + host + "\r\n", {400}},
      {"method with a bad byte", "G@T /public/x HTTP/1.1\r\n" + host + "\r\n", {400}},
      {"space in target", "GET /pub lic/x HTTP/1.1\r\n" + host + "\r\n", {400}},
      {"tab before version", "GET /public/x\tHTTP/1.1\r\n" + host + "\r\n", {400, 505}},
      {"CR-only line ends", "GET /public/x HTTP/1.1\rHost: a\r\r", {400}},
      {"lower-case method", "get /public/x HTTP/1.1\r\n" + host + "\r\n", {400}},
      {"asterisk target", "GET * HTTP/1.1\r\n" + host + "\r\n", {400}},
      {"HTTP/2 preface cut short", "PRI * HTTP/2.0\r\n\r\nSX\r\n\r\n", {400, 505}},
      {"unknown major version", "GET /public/x HTTP/9.9\r\n" + host + "\r\n", {505}},
      {"HTTP/2.0 request line", "GET /public/x HTTP/2.0\r\n" + host + "\r\n", {505}},
      {"HTTP/0.9 request line", "GET /public/x\r\n\r\n", {400, 505}},
      {"NUL in a header", get + nul + "\r\n", {400}},
      {"header without colon", get + "X-A b\r\n\r\n", {400}},
      {"space in header name", get + "Bad Header: x\r\n\r\n", {400}},
      {"no Host", "GET /public/x HTTP/1.1\r\n\r\n", {400}},
      {"two Hosts", get + host + "\r\n", {400}},
      {"obs-fold on the first header", "GET /public/x HTTP/1.1\r\n " + host + host + "\r\n", {400}},
      {"CONNECT", "CONNECT evil.example:443 HTTP/1.1\r\n" + host + "\r\n", {405}},
      {"header over max_header_bytes",
       get + "X-Big: " + std::string(2 * kMaxHeaderBytes, 'a') + "\r\n\r\n",
       {431}},
      {"2000 small headers", manyHeaders(get, 2000), {431}},
      {"target over max_header_bytes",
       "GET /public/" + std::string(2 * kMaxHeaderBytes, 'a') + " HTTP/1.1\r\n" + host + "\r\n",
       {431}},
      // Request smuggling: framing must be unambiguous, or the request is refused.
      {"Content-Length and Transfer-Encoding",
       post + "Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
       {400}},
      {"Transfer-Encoding and Content-Length",
       post + "Transfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n0\r\n\r\n",
       {400}},
      {"Transfer-Encoding and Content-Length 0",
       post + "Transfer-Encoding: chunked\r\nContent-Length: 0\r\n\r\n0\r\n\r\n",
       {400}},
      {"two equal Content-Length",
       post + "Content-Length: 5\r\nContent-Length: 5\r\n\r\nhello",
       {400}},
      {"two different Content-Length",
       post + "Content-Length: 5\r\nContent-Length: 6\r\n\r\nhello!",
       {400}},
      {"Content-Length list", post + "Content-Length: 5, 5\r\n\r\nhello", {400}},
      {"negative Content-Length", post + "Content-Length: -1\r\n\r\n", {400}},
      {"Content-Length with a sign", post + "Content-Length: +3\r\n\r\nabc", {400}},
      {"non-numeric Content-Length", post + "Content-Length: abc\r\n\r\n", {400}},
      {"overflowing Content-Length",
       post + "Content-Length: 99999999999999999999999\r\n\r\n",
       {400, 413}},
      {"space before colon (TE)", post + "Transfer-Encoding : chunked\r\n\r\n0\r\n\r\n", {400}},
      {"space before colon (CL)", post + "Content-Length : 3\r\n\r\nabc", {400}},
      {"chunked not last", post + "Transfer-Encoding: chunked, gzip\r\n\r\n0\r\n\r\n", {400}},
      {"unknown transfer coding", post + "Transfer-Encoding: xchunked\r\n\r\n0\r\n\r\n", {400}},
      {"chunked then identity",
       post + "Transfer-Encoding: chunked\r\nTransfer-Encoding: identity\r\n\r\n0\r\n\r\n",
       {400}},
      {"upper-case TE with CL",
       post + "TRANSFER-ENCODING: CHUNKED\r\nContent-Length: 3\r\n\r\nabc",
       {400}},
      {"tab-separated TE with CL",
       post + "Transfer-Encoding:\tchunked\r\nContent-Length: 3\r\n\r\nabc",
       {400}},
      {"obs-folded TE with CL",
       post + "Transfer-Encoding:\r\n chunked\r\nContent-Length: 3\r\n\r\nabc",
       {400}},
      {"bad chunk size", post + "Transfer-Encoding: chunked\r\n\r\nzz\r\n\r\n", {400}},
      {"overflowing chunk size",
       post + "Transfer-Encoding: chunked\r\n\r\nfffffffffffffffffff\r\n",
       {400, 413}},
      {"smuggled second request",
       post +
           "Content-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"
           "GET /admin-private/s HTTP/1.1\r\n" +
           host + "\r\n",
       {400}},
  };
  int wrong_status = 0;
  int forwarded_count = 0;
  for (const auto& c : cases) {
    const size_t before = forwarded();
    const std::string answer = proxy_->raw(c.bytes);
    const int status = rawStatus(answer);
    std::this_thread::sleep_for(milliseconds(20));  // anything forwarded has arrived by now
    const bool was_forwarded = forwarded() != before;
    if (c.statuses.count(status) == 0) ++wrong_status;
    if (was_forwarded) ++forwarded_count;
    EXPECT_GT(c.statuses.count(status), 0u) << c.name << ": " << answer.substr(0, 120);
    EXPECT_FALSE(was_forwarded) << c.name << " reached an upstream";
  }
  // The whole HTTP/2 preface starts HTTP/2 (prior knowledge): the proxy's SETTINGS come back,
  // and nothing is forwarded.
  const size_t before_h2 = forwarded();
  const std::string h2 = proxy_->raw("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n");
  EXPECT_EQ(h2.substr(3, 1), std::string(1, '\x04')) << "no SETTINGS frame first";
  std::this_thread::sleep_for(milliseconds(20));
  EXPECT_EQ(forwarded(), before_h2);
  EXPECT_EQ(proxy_->get("/public/after").status, 200) << "still serving after the abuse";
  reportFigure("hostile.malformed_requests", static_cast<double>(cases.size()), "-",
               "malformed, oversized and ambiguously framed requests sent");
  reportFigure("hostile.malformed_wrong_status", wrong_status, "0",
               "of those, answered otherwise than the expected 400/405/431/505");
  reportFigure("hostile.malformed_forwarded", forwarded_count, "0",
               "of those, forwarded to an upstream (smuggling attempts included)");
}

TEST_F(HostileHttpTest, ObsFoldIsRefusedOrUnfoldedBeforeForwarding) {
  const std::string answer = proxy_->raw(
      "GET /public/fold HTTP/1.1\r\nHost: fault.test\r\nX-Fold: a\r\n  b\r\nConnection: "
      "close\r\n\r\n");
  const int status = rawStatus(answer);
  ASSERT_TRUE(status == 400 || status == 200) << answer;
  int folded_forwarded = 0;
  if (status == 200) {
    ASSERT_EQ(public_.count(), 1u);
    const std::string value = public_.requests()[0].header("x-fold");
    // RFC 9112 §5.2: a proxy replaces obs-fold with spaces before forwarding.
    if (value.find_first_of("\r\n") != std::string::npos) ++folded_forwarded;
    EXPECT_EQ(value.find_first_of("\r\n"), std::string::npos) << value;
    EXPECT_NE(value.find('a'), std::string::npos);
    EXPECT_NE(value.find('b'), std::string::npos);
  }
  reportFigure(
      "hostile.obs_fold_forwarded_folded", folded_forwarded, "0",
      "obs-folded header lines forwarded with the fold (they must be refused or unfolded)");
}

// Slowloris: clients that dribble a request head a byte every 200 ms must be cut at
// limits.header_timeout_ms while everyone else keeps being served.
TEST_F(HostileHttpTest, SlowClientsAreCutAtTheHeaderTimeoutWhileOthersAreServed) {
  const int slow_clients = fullRun() ? 32 : 4;
  struct SlowResult {
    int status = -1;  ///< 408, 0 = closed without an answer, -1 = never cut
    double cut_after_ms = 0;
  };
  std::vector<SlowResult> results(static_cast<size_t>(slow_clients));
  std::atomic<bool> any_cut{false};
  const uint16_t port = proxy_->port();
  std::vector<std::thread> threads;
  for (int i = 0; i < slow_clients; ++i) {
    threads.emplace_back([&, i] {
      SlowResult& result = results[static_cast<size_t>(i)];
      const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
      sockaddr_in address{};
      address.sin_family = AF_INET;
      address.sin_port = htons(port);
      address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
      if (::connect(fd, reinterpret_cast<const sockaddr*>(&address), sizeof address) != 0) {
        ::close(fd);
        return;
      }
      const std::string head = "GET /public/slow HTTP/1.1\r\nHost: fault.test\r\nX-Slow: ";
      const auto begun = Clock::now();
      size_t next = 0;
      const auto give_up = begun + milliseconds(kHeaderTimeoutMs * 8);
      while (Clock::now() < give_up) {
        const char byte = next < head.size() ? head[next] : 'a';
        ++next;
        if (::send(fd, &byte, 1, MSG_NOSIGNAL) != 1) {
          result.status = 0;
          break;
        }
        pollfd poller{fd, POLLIN, 0};
        if (::poll(&poller, 1, 200) > 0) {
          char buffer[512];
          const ssize_t n = ::recv(fd, buffer, sizeof buffer, 0);
          result.status = n > 0 ? rawStatus(std::string(buffer, static_cast<size_t>(n))) : 0;
          break;
        }
      }
      result.cut_after_ms = millisBetween(begun, Clock::now());
      any_cut = true;
      ::close(fd);
    });
  }
  LoadGenerator others(
      {.port = port, .connections = 2, .path_prefix = "/public/ok-", .pause = milliseconds(20)});
  others.start();
  // What the other clients got while every slow client was still holding on.
  int64_t served_while_held = 0;
  const auto started = Clock::now();
  while (!any_cut && Clock::now() - started < std::chrono::seconds(10)) {
    served_while_held = others.requests();
    std::this_thread::sleep_for(milliseconds(10));
  }
  for (auto& thread : threads)
    thread.join();
  const LoadTotals totals = others.stop();

  int cut = 0;
  double worst_cut_ms = 0;
  for (const auto& result : results) {
    if (result.status == 408 || result.status == 0) ++cut;
    worst_cut_ms = std::max(worst_cut_ms, result.cut_after_ms);
    EXPECT_TRUE(result.status == 408 || result.status == 0) << "status " << result.status;
    EXPECT_GE(result.cut_after_ms, kHeaderTimeoutMs - 50);
    EXPECT_LT(result.cut_after_ms, kHeaderTimeoutMs + 2000);
  }
  std::cout << "other clients: " << totals.describe() << std::endl;
  reportFigure("hostile.slowloris_cut", cut, std::to_string(slow_clients),
               "clients sending a header byte every 200 ms that were cut (408 or close)");
  reportFigure("hostile.slowloris_worst_cut_ms", worst_cut_ms, "1000-3000",
               "slowest cut after the first byte (limits.header_timeout_ms = 1000)");
  reportFigure("hostile.slowloris_others_failed", static_cast<double>(totals.clientErrors()), "0",
               "failed requests of normal clients meanwhile (" + std::to_string(totals.requests) +
                   " sent, max latency " + std::to_string(totals.max.count() / 1000) + " ms)");
  EXPECT_EQ(cut, slow_clients);
  EXPECT_EQ(totals.clientErrors(), 0) << totals.describe();
  EXPECT_GT(served_while_held, 0) << "others were served while the slow clients held on";
  for (const auto& request : public_.requests())
    EXPECT_EQ(request.uri.find("/public/slow"), std::string::npos) << "a slow head was forwarded";
}

struct Spelling {
  std::string target;
  std::string upstream;  ///< "" = refused with 400 and forwarded nowhere
  std::string path;      ///< the path the upstream must receive
};

TEST_F(HostileHttpTest, NoPathSpellingReachesARouteItDoesNotBelongTo) {
  const std::string secret = "/admin-private/secret";
  const std::vector<Spelling> spellings = {
      {"/admin-private/secret", "private", secret},
      {"/public/x", "public", "/public/x"},
      {"/elsewhere", "monolith", "/elsewhere"},
      // Dot segments, plain or percent-encoded in either case, resolve before routing.
      {"/public/../admin-private/secret", "private", secret},
      {"/public/%2e%2e/admin-private/secret", "private", secret},
      {"/public/%2E%2E/admin-private/secret", "private", secret},
      {"/public/%2e%2E/admin-private/secret", "private", secret},
      {"/public/.%2e/admin-private/secret", "private", secret},
      {"/public/./../admin-private/secret", "private", secret},
      {"/public/x/../../admin-private/secret", "private", secret},
      {"/admin-private/../public/x", "public", "/public/x"},
      {"/admin-private/%2e%2e/public/x", "public", "/public/x"},
      {"/admin-private/secret/%2e%2e/%2e%2e/public/x", "public", "/public/x"},
      {"/./admin-private/secret", "private", secret},
      {"/public/./x", "public", "/public/x"},
      {"/public/....//x", "public", "/public/..../x"},
      // Repeated slashes fold.
      {"//admin-private/secret", "private", secret},
      {"///admin-private//secret", "private", secret},
      {"/public//../admin-private/secret", "private", secret},
      // Encoded unreserved characters decode; the hex case does not matter.
      {"/admin-privat%65/secret", "private", secret},
      {"/%61dmin-private/secret", "private", secret},
      {"/%41dmin-private/secret", "monolith", "/Admin-private/secret"},
      // Matching is case-sensitive: another case is another path, never the private route.
      {"/Admin-Private/secret", "monolith", "/Admin-Private/secret"},
      {"/ADMIN-PRIVATE/secret", "monolith", "/ADMIN-PRIVATE/secret"},
      {"/PUBLIC/x", "monolith", "/PUBLIC/x"},
      {"/admin-private.json", "monolith", "/admin-private.json"},
      // Dot segments with path parameters ("..;" is ".." to servlet containers) are refused.
      {"/public/..;/admin-private/secret", "", ""},
      {"/public/%2e%2e;/admin-private/secret", "", ""},
      {"/public/..;x=1/admin-private/secret", "", ""},
      {"/public/..%3b/admin-private/secret", "", ""},
      {"/admin-private/..;/public/x", "", ""},
      {"/public/.;/x", "", ""},
      // Encoded '/', '\' and '%', backslashes, NUL, bad escapes, fragments, climbing the root.
      {"/public%2f..%2fadmin-private/secret", "", ""},
      {"/public%2F..%2Fadmin-private/secret", "", ""},
      {"/public/..%2fadmin-private/secret", "", ""},
      {"/admin-private%2fsecret", "", ""},
      {"/public\\..\\admin-private\\secret", "", ""},
      {"/public/%5c..%5cadmin-private/secret", "", ""},
      {"/public/%5C..%5Cadmin-private/secret", "", ""},
      {"/public/%252e%252e/admin-private/secret", "", ""},
      {"/public/%00/../admin-private/secret", "", ""},
      {"/public/%2", "", ""},
      {"/public/%zz/x", "", ""},
      {"/admin-private/secret#x", "", ""},
      {"/..", "", ""},
      {"/public/../../admin-private/secret", "", ""},
      {"/%2e%2e/admin-private/secret", "", ""},
  };
  int bypasses = 0;
  int unexpected = 0;
  for (const auto& s : spellings) {
    const size_t before_monolith = monolith_.count();
    const size_t before_public = public_.count();
    const size_t before_private = private_.count();
    const std::string answer = proxy_->raw(
        "GET " + s.target + " HTTP/1.1\r\nHost: fault.test\r\nConnection: close\r\n\r\n");
    const int status = rawStatus(answer);
    std::string reached;
    std::string received;
    const auto check = [&](const FakeUpstream& upstream, size_t before) {
      if (upstream.count() == before) return;
      reached += reached.empty() ? upstream.name() : "+" + upstream.name();
      received = upstream.requests().back().uri;
    };
    check(monolith_, before_monolith);
    check(public_, before_public);
    check(private_, before_private);
    // A bypass: the upstream reached does not own the path it received, even read leniently,
    // or what it received is not canonical (so it could read it as another path).
    const std::string lenient = lenientBackendPath(received);
    if (!reached.empty() &&
        (reached != owner(lenient) || lenient != received.substr(0, received.find('?')))) {
      ++bypasses;
      ADD_FAILURE() << "bypass: " << s.target << " reached " << reached << " as " << received;
    }
    const bool as_expected = s.upstream.empty()
                                 ? (status == 400 && reached.empty())
                                 : (status == 200 && reached == s.upstream && received == s.path);
    if (!as_expected) {
      ++unexpected;
      ADD_FAILURE() << s.target << ": status " << status << ", reached '" << reached << "' as '"
                    << received << "'; expected '" << s.upstream << "' as '" << s.path << "'";
    }
  }
  // The absolute form routes on its path like the origin form.
  const std::string absolute = proxy_->raw(
      "GET http://other.example/public/%2e%2e/admin-private/secret HTTP/1.1\r\nHost: "
      "fault.test\r\nConnection: close\r\n\r\n");
  EXPECT_EQ(rawStatus(absolute), 200) << absolute;
  ASSERT_GT(private_.count(), 0u);
  EXPECT_EQ(private_.requests().back().uri, secret);

  reportFigure("hostile.path_spellings", static_cast<double>(spellings.size() + 1), "-",
               "path spellings tried against /admin-private/** and /public/**");
  reportFigure("hostile.path_bypasses", bypasses, "0",
               "requests that reached an upstream not owning the path it received");
  reportFigure("hostile.path_unexpected", unexpected, "0",
               "spellings answered otherwise than expected (route, forwarded path or 400)");
}

}  // namespace
}  // namespace strangler::fault
