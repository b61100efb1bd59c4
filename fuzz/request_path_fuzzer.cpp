// libFuzzer: the proxy's request path end to end. The real data path (one worker's event loop,
// ClientConnection and UpstreamConnection, http_parser) serves a loopback port in this process,
// in front of a raw upstream that answers whatever the input says, byte for byte. An input is
// the bytes a client sends, optionally followed by kUpstreamMark and the upstream's answer. The
// route /g/** goes to a second raw upstream with "protocol": "h2": there the answer's bytes are
// the upstream's HTTP/2 frames (whatever the proxy sent), so the HTTP/2 client side is fuzzed too.
//
// Each input is checked against what must hold whatever the bytes:
//   1. everything the upstream receives parses as HTTP/1.1 requests (http_parser, strict), each
//      with exactly one Host and no trailer fields;
//   2. the requests the upstream receives are, in order, requests the client sent (same method
//      and same body; a retry or a fallback may send one again): never one the client did not
//      send (a smuggled request) and never a body changed on the way;
//   3. what the client receives parses as HTTP/1.1 responses (it may end cut, never malformed);
//   4. the proxy answers and closes within its timeouts; no crash, no sanitizer report.
// A failed check aborts with the reason, and libFuzzer keeps the input.
#include <arpa/inet.h>
#include <http_parser.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

#include "http_framer.h"
#include "request_path_config.h"
#include "strangler/proxy/config.h"
#include "strangler/proxy/proxy_server.h"
#include "strangler/proxy/runtime.h"

namespace {

using Clock = std::chrono::steady_clock;
using strangler::fuzz::Framer;
using strangler::fuzz::Message;

constexpr std::string_view kUpstreamMark = "\n@@upstream@@\n";
constexpr std::string_view kDefaultAnswer =
    "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 2\r\nConnection: close\r\n"
    "\r\nok";

[[noreturn]] void fail(const std::string& what) {
  std::fprintf(stderr, "request_path: %s\n", what.c_str());
  std::abort();
}

int listenLoopback(uint16_t& port) {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  const int one = 1;
  ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::bind(fd, reinterpret_cast<sockaddr*>(&address), sizeof address) != 0 ||
      ::listen(fd, 64) != 0)
    fail("cannot listen on loopback");
  socklen_t length = sizeof address;
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&address), &length);
  port = ntohs(address.sin_port);
  return fd;
}

/// Closes with a reset: thousands of connections a second would otherwise leave as many
/// TIME_WAIT entries and run out of loopback ports. Only called once the exchange is over.
void closeHard(int fd) {
  const linger hard{1, 0};
  ::setsockopt(fd, SOL_SOCKET, SO_LINGER, &hard, sizeof hard);
  ::close(fd);
}

void setTimeout(int fd, int seconds) {
  timeval tv{seconds, 0};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  ::setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
}

/// The raw upstream: one connection at a time (the proxy sends one request at a time for the
/// one client connection an input opens). It frames what arrives, records each complete request,
/// answers it with the input's bytes and closes.
class RawUpstream {
 public:
  /// `framed`: the proxy speaks HTTP/1.1 to it (its requests are framed and checked); else
  /// HTTP/2 (the first bytes that arrive are taken as the request, not checked).
  explicit RawUpstream(bool framed = true) : framed_(framed) {
    listen_fd_ = listenLoopback(port_);
    thread_ = std::thread([this] { run(); });
  }
  uint16_t port() const { return port_; }

  void prepare(std::string answer) {
    std::lock_guard lock(mutex_);
    answer_ = std::move(answer);
    received_.clear();
    malformed_.clear();
  }
  /// Waits until no proxy connection is open (up to `limit`); false when one still is.
  bool settle(std::chrono::milliseconds limit) {
    std::unique_lock lock(mutex_);
    return idle_.wait_for(lock, limit, [this] { return open_ == 0; });
  }
  std::vector<Message> received() {
    std::lock_guard lock(mutex_);
    return received_;
  }
  std::string malformed() {
    std::lock_guard lock(mutex_);
    return malformed_;
  }

 private:
  void run() {
    for (;;) {
      const int fd = ::accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
      if (fd < 0) continue;
      {
        std::lock_guard lock(mutex_);
        ++open_;
      }
      serve(fd);
      closeHard(fd);
      {
        std::lock_guard lock(mutex_);
        --open_;
      }
      idle_.notify_all();
    }
  }

  void serve(int fd) {
    setTimeout(fd, 3);
    Framer framer(HTTP_REQUEST);
    char buffer[16384];
    for (;;) {
      const ssize_t n = ::recv(fd, buffer, sizeof buffer, 0);
      if (n <= 0) return;  // the proxy closed (or went silent): nothing to answer
      if (!framed_) {
        answerRaw(fd);
        return;
      }
      if (!framer.feed(std::string_view(buffer, static_cast<size_t>(n)))) {
        std::lock_guard lock(mutex_);
        malformed_ = framer.error();
        return;
      }
      if (framer.messages.empty()) continue;
      record(framer);
      if (!sendAnswer(fd)) return;
      // Reads on for a moment (a proxy may keep the connection for its next request, which
      // comes at once): a request sent after the answer is checked too.
      for (;;) {
        pollfd ready{fd, POLLIN, 0};
        if (::poll(&ready, 1, 100) <= 0) return;
        const ssize_t r = ::recv(fd, buffer, sizeof buffer, 0);
        if (r <= 0) return;
        if (!framer.feed(std::string_view(buffer, static_cast<size_t>(r)))) {
          std::lock_guard lock(mutex_);
          malformed_ = framer.error();
          return;
        }
        record(framer);
      }
    }
  }

  /// Sends the input's answer and ends the writing side; false when the proxy went away.
  bool sendAnswer(int fd) {
    std::string answer;
    {
      std::lock_guard lock(mutex_);
      answer = answer_;
    }
    size_t sent = 0;
    while (sent < answer.size()) {
      const ssize_t w = ::send(fd, answer.data() + sent, answer.size() - sent, MSG_NOSIGNAL);
      if (w <= 0) return false;
      sent += static_cast<size_t>(w);
    }
    ::shutdown(fd, SHUT_WR);
    return true;
  }

  /// HTTP/2: the input's bytes as the answer, then whatever the proxy says until it is quiet.
  void answerRaw(int fd) {
    if (!sendAnswer(fd)) return;
    char buffer[16384];
    for (;;) {
      pollfd ready{fd, POLLIN, 0};
      if (::poll(&ready, 1, 100) <= 0) return;
      if (::recv(fd, buffer, sizeof buffer, 0) <= 0) return;
    }
  }

  void record(Framer& framer) {
    std::lock_guard lock(mutex_);
    for (auto& message : framer.messages)
      received_.push_back(std::move(message));
    framer.messages.clear();
  }

  bool framed_ = true;
  int listen_fd_ = -1;
  uint16_t port_ = 0;
  std::thread thread_;
  std::mutex mutex_;
  std::condition_variable idle_;
  int open_ = 0;
  std::string answer_;
  std::vector<Message> received_;
  std::string malformed_;
};

/// Takes every copy a shadow route offers (so the path that fills one runs) and drops it.
class TakingShadowSink : public strangler::proxy::ShadowSink {
 public:
  bool offer(strangler::proxy::ShadowRequest request) override { return !request.method.empty(); }
  void tooLarge(const std::string&) override {}
  void unanswered(const std::string&) override {}
  strangler::proxy::ShadowCounters counters(const std::string&) const override { return {}; }
  nlohmann::json diffs(const std::string&) const override { return nlohmann::json::array(); }
};

struct Proxy {
  RawUpstream upstream;
  RawUpstream h2_upstream{false};
  strangler::proxy::UpstreamRegistry registry;
  std::shared_ptr<strangler::proxy::ProxyShared> shared;
  std::unique_ptr<strangler::proxy::ProxyServer> server;
  uint16_t port = 0;
};

Proxy& proxy() {
  static Proxy* instance = [] {
    // The threads started here (the upstream, the proxy's loop) inherit a mask without
    // SIGALRM, so libFuzzer's timer only ever interrupts this thread.
    sigset_t alarm;
    sigemptyset(&alarm);
    sigaddset(&alarm, SIGALRM);
    sigset_t before;
    pthread_sigmask(SIG_BLOCK, &alarm, &before);
    auto* p = new Proxy;
    const std::string at = "127.0.0.1:" + std::to_string(p->upstream.port());
    const nlohmann::json config = strangler::fuzz::requestPathConfig(
        at, true, "127.0.0.1:" + std::to_string(p->h2_upstream.port()));
    auto parsed = strangler::proxy::ProxyConfig::create(config);
    if (!parsed) fail("the harness config is refused: " + parsed.error().message);
    auto holds = std::make_shared<strangler::proxy::RouteHolds>(1);
    auto runtime = p->registry.build(
        std::make_shared<const strangler::proxy::ProxyConfig>(std::move(parsed).value()), 1, holds);
    if (!runtime) fail("no runtime: " + runtime.error().message);
    p->shared = std::make_shared<strangler::proxy::ProxyShared>(*runtime, 1, holds);
    p->shared->shadow = std::make_shared<TakingShadowSink>();
    auto server = strangler::proxy::ProxyServer::start({"127.0.0.1", 0}, 1, p->shared);
    if (!server) fail("the proxy does not start: " + server.error().message);
    p->server = std::move(server).value();
    p->port = static_cast<uint16_t>(p->server->address().port);
    pthread_sigmask(SIG_SETMASK, &before, nullptr);
    return p;
  }();
  return *instance;
}

/// Sends `request` to the proxy, half-closes, and reads the answer to the proxy's close.
std::string exchange(uint16_t port, std::string_view request) {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  address.sin_port = htons(port);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&address), sizeof address) != 0) {
    // libFuzzer's timer (SIGALRM) may interrupt it: the connection goes on by itself.
    pollfd done{fd, POLLOUT, 0};
    int error = errno;
    if (error == EINTR) {
      while (::poll(&done, 1, 5000) < 0 && errno == EINTR) {
      }
      socklen_t length = sizeof error;
      ::getsockopt(fd, SOL_SOCKET, SO_ERROR, &error, &length);
    }
    if (error != 0 && error != EINTR)
      fail(std::string("cannot connect to the proxy: ") + std::strerror(error));
  }
  setTimeout(fd, 5);
  size_t sent = 0;
  while (sent < request.size()) {
    const ssize_t n = ::send(fd, request.data() + sent, request.size() - sent, MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;  // the proxy answered early and closed: what it said is read below
    sent += static_cast<size_t>(n);
  }
  ::shutdown(fd, SHUT_WR);
  std::string answer;
  char buffer[16384];
  const auto give_up = Clock::now() + std::chrono::seconds(5);
  for (;;) {
    const ssize_t n = ::recv(fd, buffer, sizeof buffer, 0);
    if (n > 0) {
      answer.append(buffer, static_cast<size_t>(n));
      continue;
    }
    if (n == 0 || errno == ECONNRESET) break;
    if (errno == EINTR) continue;
    if (Clock::now() >= give_up || errno == EAGAIN || errno == EWOULDBLOCK)
      fail("the proxy neither answered nor closed within 5 s");
  }
  closeHard(fd);
  return answer;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  Proxy& p = proxy();
  const std::string_view input(reinterpret_cast<const char*>(data), size);
  std::string_view request = input;
  std::string answer(kDefaultAnswer);
  if (const size_t mark = input.find(kUpstreamMark); mark != std::string_view::npos) {
    request = input.substr(0, mark);
    answer = std::string(input.substr(mark + kUpstreamMark.size()));
  }
  p.upstream.prepare(answer);
  p.h2_upstream.prepare(answer);

  // What a client-side parser frames from the bytes: the requests the client sent.
  Framer sent(HTTP_REQUEST);
  sent.feed(request);

  const std::string reply = exchange(p.port, request);
  if (!p.upstream.settle(std::chrono::seconds(5)) || !p.h2_upstream.settle(std::chrono::seconds(5)))
    fail("an upstream connection is still open 5 s after the client's exchange");

  // 1. What reached the upstream is well framed.
  if (const std::string malformed = p.upstream.malformed(); !malformed.empty())
    fail("the upstream received a malformed request: " + malformed);
  const std::vector<Message> received = p.upstream.received();
  for (const Message& message : received) {
    if (message.hosts != 1)
      fail("a forwarded request has " + std::to_string(message.hosts) + " Host fields");
    if (message.trailer) fail("a forwarded request carries trailer fields");
  }
  // A connection that opened with the HTTP/2 preface speaks HTTP/2 frames both ways: what
  // reaches the upstream is checked (1: HTTP/2 turned into HTTP/1.1 must frame as it should), the
  // client's side by 4 only.
  if (request.substr(0, 24) == std::string_view("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", 24)) return 0;
  // 2. ...and is, in order, what the client sent.
  if (const Message* unsent = strangler::fuzz::unsentRequest(received, sent.messages))
    fail("the upstream received a request the client did not send: " + unsent->method + " with a " +
         std::to_string(unsent->body.size()) + "-byte body");
  // 3. What the client received is well framed. After a HEAD, only the first head is framed (a
  // framer cannot tell which answer is the HEAD's, and that one has no body).
  Framer replies(HTTP_RESPONSE);
  std::string_view framed = reply;
  for (const Message& message : sent.messages) {
    if (message.method != "HEAD") continue;
    replies.skipBodies();
    const size_t end = reply.find("\r\n\r\n");
    framed = end == std::string::npos ? std::string_view() : framed.substr(0, end + 4);
    break;
  }
  if (!replies.feed(framed))
    fail(std::string("the client received a malformed response (") + replies.error() + "): " +
         nlohmann::json(reply).dump(-1, ' ', false, nlohmann::json::error_handler_t::replace));
  return 0;
}
