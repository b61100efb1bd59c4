#include "shadow_replay.h"

#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "http_util.h"
#include "strangler/proxy/config.h"

namespace strangler::proxy {
namespace {

using Clock = std::chrono::steady_clock;

std::string requestBytes(const ShadowRequest& job, const std::string& path,
                         const std::string& host) {
  std::string out =
      job.method + " " + path + (job.has_query ? "?" + job.query : "") + " HTTP/1.1\r\n";
  bool has_host = false;
  for (const auto& [name, value] : job.headers) {
    if (!forwardedOnCopy(name)) continue;
    has_host = has_host || iequals(name, "host");
    out += name + ": " + value + "\r\n";
  }
  if (!has_host) out += "Host: " + host + "\r\n";
  out += std::string(kShadowHeader) + ": 1\r\n";
  if (!job.body.empty() || job.method == "POST" || job.method == "PUT" || job.method == "PATCH")
    out += "Content-Length: " + std::to_string(job.body.size()) + "\r\n";
  out += "\r\n";
  out += job.body;
  return out;
}

}  // namespace

bool forwardedOnCopy(std::string_view name) {
  return !isHopByHop(name) && !iequals(name, "content-length") &&
         !iequals(name, "transfer-encoding") && !startsWithIgnoreCase(name, "x-strangler-");
}

struct ShadowReplayLoop::Exchange {
  ShadowRequest job;
  std::vector<Outcome> outcomes;
  Leg leg;
  std::shared_ptr<EndpointState> endpoint;
  int fd = -1;
  bool reused = false;
  bool connecting = false;
  bool got_bytes = false;
  std::string out;
  size_t out_pos = 0;
  http_parser parser{};
  CapturedResponse answer;
  std::string field;
  bool value_last = false;
  bool complete = false;
  bool truncated = false;
  size_t capture_limit = 0;
  Clock::time_point deadline;

  static Exchange* of(http_parser* p) { return static_cast<Exchange*>(p->data); }
  static int onHeaderField(http_parser* p, const char* at, size_t n) {
    auto* e = of(p);
    if (e->value_last) e->field.clear();
    e->value_last = false;
    e->field.append(at, n);
    return 0;
  }
  static int onHeaderValue(http_parser* p, const char* at, size_t n) {
    auto* e = of(p);
    if (!e->value_last) e->answer.headers.emplace_back(e->field, std::string());
    e->value_last = true;
    e->answer.headers.back().second.append(at, n);
    return 0;
  }
  static int onHeadersComplete(http_parser* p) {
    of(p)->answer.status = static_cast<int>(p->status_code);
    return 0;
  }
  static int onBody(http_parser* p, const char* at, size_t n) {
    auto* e = of(p);
    if (e->answer.body.size() + n > e->capture_limit) {
      e->truncated = true;
      return 1;  // stop: the rest is not compared (the connection is not reused)
    }
    e->answer.body.append(at, n);
    return 0;
  }
  static int onComplete(http_parser* p) {
    of(p)->complete = true;
    http_parser_pause(p, 1);
    return 0;
  }
  static const http_parser_settings& settings() {
    static const http_parser_settings s = [] {
      http_parser_settings v{};
      http_parser_settings_init(&v);
      v.on_header_field = onHeaderField;
      v.on_header_value = onHeaderValue;
      v.on_headers_complete = onHeadersComplete;
      v.on_body = onBody;
      v.on_message_complete = onComplete;
      return v;
    }();
    return s;
  }
};

ShadowReplayLoop::ShadowReplayLoop(size_t max_in_flight, size_t capture_bytes, Next next, Legs legs,
                                   Done done)
    : max_in_flight_(std::max<size_t>(1, max_in_flight)),
      capture_bytes_(capture_bytes),
      next_(std::move(next)),
      legs_(std::move(legs)),
      done_(std::move(done)) {
  epoll_ = ::epoll_create1(EPOLL_CLOEXEC);
  wake_fd_ = ::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  epoll_event ev{};
  ev.events = EPOLLIN;
  ev.data.fd = wake_fd_;
  ::epoll_ctl(epoll_, EPOLL_CTL_ADD, wake_fd_, &ev);
  thread_ = std::thread([this] { run(); });
}

ShadowReplayLoop::~ShadowReplayLoop() {
  stop();
  for (auto& [pool, fds] : idle_)
    for (const auto& [fd, since] : fds)
      ::close(fd);
  for (auto& [fd, exchange] : by_fd_)
    ::close(fd);
  ::close(wake_fd_);
  ::close(epoll_);
}

void ShadowReplayLoop::wake() {
  if (!sleeping_.load(std::memory_order_acquire)) return;
  const uint64_t one = 1;
  [[maybe_unused]] auto n = ::write(wake_fd_, &one, sizeof one);
}

void ShadowReplayLoop::stop() {
  if (stopping_.exchange(true)) {
    if (thread_.joinable()) thread_.join();
    return;
  }
  const uint64_t one = 1;
  [[maybe_unused]] auto n = ::write(wake_fd_, &one, sizeof one);
  if (thread_.joinable()) thread_.join();
}

void ShadowReplayLoop::run() {
  // Copies yield the CPU to the event loops: the lowest priority of the normal class (nice 19)
  // gives this thread ~1.5 % of a busy core and lets any waking event loop preempt it. Not
  // SCHED_IDLE: that class can starve a thread for seconds, and this one takes the comparator's
  // lock, which /routes and /diffs need (a starved holder would stall them). Under saturation the
  // copies fall behind and the queue drops them (counted) rather than slowing clients.
  ::setpriority(PRIO_PROCESS, static_cast<id_t>(::gettid()), 19);
  std::vector<epoll_event> events(256);
  auto last_job = Clock::now() - std::chrono::seconds(10);
  while (!stopping_.load()) {
    const size_t before = by_fd_.size();
    pull();
    if (by_fd_.size() != before) last_job = Clock::now();
    // Sleep until a socket is ready or the nearest deadline. While copies keep coming, the loop
    // looks for new ones every 2 ms on its own (they wait in the queue meanwhile): the event
    // loops that offer them then never make a system call to wake it. After a quiet second it
    // sleeps longer, and the next offer wakes it (wake()).
    const auto now = Clock::now();
    const bool busy = now - last_job < std::chrono::seconds(1);
    closeIdle(now);
    int wait_ms = busy ? 2 : 100;
    for (const auto& [fd, e] : by_fd_) {
      const auto left =
          std::chrono::duration_cast<std::chrono::milliseconds>(e->deadline - now).count() + 1;
      wait_ms = static_cast<int>(std::max<int64_t>(0, std::min<int64_t>(wait_ms, left)));
    }
    if (!busy && by_fd_.size() < max_in_flight_) {
      sleeping_.store(true, std::memory_order_seq_cst);
      const size_t again = by_fd_.size();
      pull();  // a job offered before the flag was seen
      if (by_fd_.size() != again) {
        last_job = Clock::now();
        wait_ms = 0;
      }
    }
    const int n = ::epoll_wait(epoll_, events.data(), static_cast<int>(events.size()), wait_ms);
    sleeping_.store(false, std::memory_order_release);
    for (int i = 0; i < n; ++i) {
      if (events[i].data.fd == wake_fd_) {
        uint64_t count = 0;
        [[maybe_unused]] auto r = ::read(wake_fd_, &count, sizeof count);
        continue;
      }
      const auto it = by_fd_.find(events[i].data.fd);
      if (it != by_fd_.end()) onEvents(*it->second, events[i].events);
    }
    const auto after = Clock::now();
    std::vector<Exchange*> late;
    for (const auto& [fd, e] : by_fd_)
      if (e->deadline <= after) late.push_back(e.get());
    for (auto* e : late)
      finish(*e, std::nullopt, "timeout", false);
  }
}

void ShadowReplayLoop::closeIdle(Clock::time_point now) {
  for (auto& [pool, connections] : idle_) {
    auto kept = connections.begin();
    for (auto& connection : connections) {
      if (now - connection.second > std::chrono::milliseconds(200)) {
        ::close(connection.first);
      } else {
        *kept++ = connection;
      }
    }
    connections.erase(kept, connections.end());
  }
}

void ShadowReplayLoop::pull() {
  while (by_fd_.size() < max_in_flight_ && !stopping_.load()) {
    auto job = next_();
    if (!job) return;
    auto exchange = std::make_unique<Exchange>();
    exchange->job = std::move(*job);
    advance(std::move(exchange));
  }
}

void ShadowReplayLoop::advance(std::unique_ptr<Exchange> e) {
  if (auto leg = legs_(e->job, e->outcomes)) {
    e->leg = std::move(*leg);
    begin(std::move(e));
    return;
  }
  done_(std::move(e->job), std::move(e->outcomes));
}

void ShadowReplayLoop::begin(std::unique_ptr<Exchange> e) {
  const RuntimeUpstream* upstream = e->leg.upstream;
  std::string error;
  if (upstream == nullptr || upstream->endpoints.empty()) {
    error = "no endpoints";
  } else if (upstream->tls || upstream->config->h2) {
    error = "shadow copies are replayed over plain HTTP/1.1 only";
  }
  if (!error.empty()) {
    e->outcomes.push_back({std::nullopt, error});
    return advance(std::move(e));
  }
  const uint64_t turn = upstream->round_robin->fetch_add(1, std::memory_order_relaxed);
  e->endpoint = upstream->endpoints[turn % upstream->endpoints.size()];
  e->capture_limit = capture_bytes_;
  e->deadline = Clock::now() + std::chrono::milliseconds(upstream->config->timeout_ms);
  e->out = requestBytes(e->job, e->leg.path, e->endpoint->key);
  e->out_pos = 0;
  e->answer = CapturedResponse{};
  e->complete = e->truncated = e->got_bytes = e->value_last = false;
  e->field.clear();
  http_parser_init(&e->parser, HTTP_RESPONSE);
  e->parser.data = e.get();
  // A kept-alive connection to the endpoint, else a new one.
  auto& idle = idle_[e->endpoint->pool_key];
  e->reused = !idle.empty();
  if (e->reused) {
    e->fd = idle.back().first;
    idle.pop_back();
  } else {
    e->fd =
        ::socket(e->endpoint->sockaddr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    const int one = 1;
    ::setsockopt(e->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    const int rc = ::connect(e->fd, reinterpret_cast<const sockaddr*>(&e->endpoint->sockaddr),
                             e->endpoint->sockaddr_len);
    e->connecting = rc != 0 && errno == EINPROGRESS;
    if (rc != 0 && errno != EINPROGRESS) {
      const std::string why = std::string("connect: ") + std::strerror(errno);
      ::close(e->fd);
      e->fd = -1;
      e->outcomes.push_back({std::nullopt, why});
      return advance(std::move(e));
    }
  }
  epoll_event ev{};
  ev.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP;
  ev.data.fd = e->fd;
  ::epoll_ctl(epoll_, EPOLL_CTL_ADD, e->fd, &ev);
  Exchange& ref = *e;
  by_fd_[e->fd] = std::move(e);
  if (!ref.connecting) send(ref);
}

void ShadowReplayLoop::send(Exchange& e) {
  while (e.out_pos < e.out.size()) {
    const ssize_t n =
        ::send(e.fd, e.out.data() + e.out_pos, e.out.size() - e.out_pos, MSG_NOSIGNAL);
    if (n > 0) {
      e.out_pos += static_cast<size_t>(n);
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return;
    finish(e, std::nullopt, std::string("send: ") + std::strerror(errno), false);
    return;
  }
  // All sent: only readability matters now.
  epoll_event ev{};
  ev.events = EPOLLIN | EPOLLRDHUP;
  ev.data.fd = e.fd;
  ::epoll_ctl(epoll_, EPOLL_CTL_MOD, e.fd, &ev);
}

void ShadowReplayLoop::onEvents(Exchange& e, uint32_t events) {
  if (e.connecting) {
    int error = 0;
    socklen_t length = sizeof error;
    ::getsockopt(e.fd, SOL_SOCKET, SO_ERROR, &error, &length);
    if (error != 0) {
      finish(e, std::nullopt, std::string("connect: ") + std::strerror(error), false);
      return;
    }
    if ((events & EPOLLOUT) == 0) return;
    e.connecting = false;
  }
  if ((events & EPOLLOUT) != 0 && e.out_pos < e.out.size()) {
    send(e);
    if (by_fd_.count(e.fd) == 0) return;
  }
  if ((events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)) == 0) return;
  char buffer[65536];
  for (;;) {
    const ssize_t n = ::recv(e.fd, buffer, sizeof buffer, 0);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return;
    if (n <= 0) {
      // End of a close-delimited answer, or the end of the connection before one.
      if (n == 0 && e.got_bytes) http_parser_execute(&e.parser, &Exchange::settings(), nullptr, 0);
      if (e.complete) {
        finish(e, std::move(e.answer), "", false);
      } else {
        finish(e, std::nullopt, n == 0 ? "closed" : std::string("recv: ") + std::strerror(errno),
               false);
      }
      return;
    }
    e.got_bytes = true;
    const size_t parsed =
        http_parser_execute(&e.parser, &Exchange::settings(), buffer, static_cast<size_t>(n));
    if (e.truncated) {
      e.answer.truncated = true;
      finish(e, std::move(e.answer), "", false);
      return;
    }
    if (e.complete) {
      const bool reusable = parsed == static_cast<size_t>(n) && http_should_keep_alive(&e.parser);
      finish(e, std::move(e.answer), "", reusable);
      return;
    }
    if (HTTP_PARSER_ERRNO(&e.parser) != HPE_OK) {
      finish(e, std::nullopt,
             std::string("bad answer: ") + http_errno_description(HTTP_PARSER_ERRNO(&e.parser)),
             false);
      return;
    }
  }
}

void ShadowReplayLoop::finish(Exchange& e, std::optional<CapturedResponse> answer,
                              std::string error, bool reusable) {
  auto node = by_fd_.extract(e.fd);
  std::unique_ptr<Exchange> owned = std::move(node.mapped());
  ::epoll_ctl(epoll_, EPOLL_CTL_DEL, owned->fd, nullptr);
  // A kept-alive connection the server had closed meanwhile: once more on a new one.
  const bool retry = !answer && owned->reused && !owned->got_bytes && error != "timeout";
  if (reusable) {
    idle_[owned->endpoint->pool_key].emplace_back(owned->fd, Clock::now());
  } else {
    ::close(owned->fd);
  }
  owned->fd = -1;
  if (retry) {
    auto& stale = idle_[owned->endpoint->pool_key];  // the others are likely as stale
    for (const auto& [fd, since] : stale)
      ::close(fd);
    stale.clear();
    begin(std::move(owned));
    return;
  }
  owned->outcomes.push_back({std::move(answer), std::move(error)});
  advance(std::move(owned));
}

}  // namespace strangler::proxy
