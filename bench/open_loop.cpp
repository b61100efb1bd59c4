// Open-loop HTTP/1.1 load at a fixed rate, for latency as clients feel it (not closed-loop like
// wrk, which slows its own sending when the server slows and so hides queueing).
//
// Request k is due at start + k / rate and goes out on connection k % connections (keep-alive,
// one request in flight per connection; a request due while its connection is busy waits for
// it). Its latency is measured from the moment it was due, not from when it could be sent, so
// a server that falls behind shows every late request (the "coordinated omission" correction).
//
//   open_loop --port P --path PATH --rate R --seconds S [--connections C] [--host H]
//
// Prints one JSON line: rate asked and achieved, sent, completed, errors, p50/p90/p99/p99.9/max
// latency in microseconds. Responses are parsed with http-parser (Debian's libhttp-parser).
#include <arpa/inet.h>
#include <http_parser.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/timerfd.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <string>
#include <vector>

namespace {

using Clock = std::chrono::steady_clock;

int64_t nowNs() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now().time_since_epoch())
      .count();
}

struct Connection {
  int fd = -1;
  http_parser parser{};
  std::deque<int64_t> due;     ///< due times of requests waiting for this connection
  int64_t in_flight_due = -1;  ///< due time of the request on the wire (-1: idle)
  bool complete = false;       ///< set by the parser when an answer ended
  bool keep_alive = true;
  int status = 0;
};

int onComplete(http_parser* parser) {
  auto* c = static_cast<Connection*>(parser->data);
  c->complete = true;
  c->status = static_cast<int>(parser->status_code);
  c->keep_alive = http_should_keep_alive(parser) != 0;
  return 0;
}

struct Options {
  std::string host = "127.0.0.1";
  int port = 0;
  std::string path = "/";
  double rate = 1000;
  double seconds = 5;
  int connections = 64;
};

[[noreturn]] void usage(const char* why) {
  std::fprintf(stderr,
               "open_loop: %s\nusage: open_loop --port P --path PATH --rate R --seconds S "
               "[--connections C] [--host H]\n",
               why);
  std::exit(2);
}

Options parse(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (i + 1 >= argc) usage(("missing value for " + a).c_str());
    const char* v = argv[++i];
    if (a == "--port")
      o.port = std::atoi(v);
    else if (a == "--path")
      o.path = v;
    else if (a == "--rate")
      o.rate = std::atof(v);
    else if (a == "--seconds")
      o.seconds = std::atof(v);
    else if (a == "--connections")
      o.connections = std::atoi(v);
    else if (a == "--host")
      o.host = v;
    else
      usage(("unknown option " + a).c_str());
  }
  if (o.port <= 0 || o.port > 65535) usage("--port is required");
  if (o.rate <= 0 || o.seconds <= 0 || o.connections <= 0)
    usage("bad rate, seconds or connections");
  return o;
}

class Load {
 public:
  explicit Load(const Options& options) : o_(options) {
    request_ = "GET " + o_.path + " HTTP/1.1\r\nHost: " + o_.host + "\r\n\r\n";
    http_parser_settings_init(&settings_);
    settings_.on_message_complete = onComplete;
    epoll_ = epoll_create1(0);
    timer_ = timerfd_create(CLOCK_MONOTONIC, 0);
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.u64 = UINT64_MAX;
    epoll_ctl(epoll_, EPOLL_CTL_ADD, timer_, &ev);
    connections_.resize(static_cast<size_t>(o_.connections));
    for (size_t i = 0; i < connections_.size(); ++i)
      open(i);
  }

  void run() {
    const int64_t start = nowNs();
    const auto total = static_cast<int64_t>(std::llround(o_.rate * o_.seconds));
    const double interval_ns = 1e9 / o_.rate;
    const int64_t give_up = start + static_cast<int64_t>((o_.seconds + 10.0) * 1e9);
    int64_t next = 0;  // the next request to schedule
    std::vector<epoll_event> events(256);
    while (completed_ + errors_ < total && nowNs() < give_up) {
      const int64_t now = nowNs();
      // Hand every request now due to its connection.
      while (next < total && start + static_cast<int64_t>(next * interval_ns) <= now) {
        auto& c = connections_[static_cast<size_t>(next % o_.connections)];
        c.due.push_back(start + static_cast<int64_t>(next * interval_ns));
        ++next;
        if (c.in_flight_due < 0) send(c);
      }
      if (next < total) arm(start + static_cast<int64_t>(next * interval_ns));
      const int n = epoll_wait(epoll_, events.data(), static_cast<int>(events.size()),
                               next < total ? -1 : 100);
      for (int i = 0; i < n; ++i) {
        if (events[i].data.u64 == UINT64_MAX) {
          uint64_t expirations = 0;
          if (::read(timer_, &expirations, sizeof expirations) < 0) continue;
          continue;
        }
        readable(connections_[events[i].data.u64]);
      }
    }
    const double elapsed = static_cast<double>(nowNs() - start) / 1e9;
    std::sort(latencies_us_.begin(), latencies_us_.end());
    const auto pick = [&](double q) {
      if (latencies_us_.empty()) return 0.0;
      return latencies_us_[std::min(
          latencies_us_.size() - 1,
          static_cast<size_t>(q * static_cast<double>(latencies_us_.size())))];
    };
    std::printf(
        "{\"rate\": %.1f, \"achieved_rps\": %.1f, \"sent\": %lld, \"completed\": %lld, "
        "\"errors\": %lld, \"non_2xx\": %lld, \"p50_us\": %.1f, \"p90_us\": %.1f, "
        "\"p99_us\": %.1f, \"p999_us\": %.1f, \"max_us\": %.1f}\n",
        o_.rate, static_cast<double>(completed_) / elapsed, static_cast<long long>(sent_),
        static_cast<long long>(completed_), static_cast<long long>(errors_),
        static_cast<long long>(non_2xx_), pick(0.5), pick(0.9), pick(0.99), pick(0.999),
        latencies_us_.empty() ? 0.0 : latencies_us_.back());
  }

 private:
  void open(size_t index) {
    auto& c = connections_[index];
    c.fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(static_cast<uint16_t>(o_.port));
    inet_pton(AF_INET, o_.host.c_str(), &addr.sin_addr);
    const int one = 1;
    setsockopt(c.fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (::connect(c.fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
      std::perror("open_loop: connect");
      std::exit(1);
    }
    http_parser_init(&c.parser, HTTP_RESPONSE);
    c.parser.data = &c;
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.u64 = index;
    epoll_ctl(epoll_, EPOLL_CTL_ADD, c.fd, &ev);
  }

  void reopen(Connection& c) {
    epoll_ctl(epoll_, EPOLL_CTL_DEL, c.fd, nullptr);
    ::close(c.fd);
    open(static_cast<size_t>(&c - connections_.data()));
  }

  void arm(int64_t at_ns) {
    itimerspec spec{};
    spec.it_value.tv_sec = at_ns / 1000000000;
    spec.it_value.tv_nsec = at_ns % 1000000000;
    timerfd_settime(timer_, TFD_TIMER_ABSTIME, &spec, nullptr);
  }

  // Blocking write of a small request on a connection with nothing in flight: it fits the
  // socket buffer at once.
  void send(Connection& c) {
    c.in_flight_due = c.due.front();
    c.due.pop_front();
    c.complete = false;
    ++sent_;
    if (::write(c.fd, request_.data(), request_.size()) != static_cast<ssize_t>(request_.size())) {
      ++errors_;
      c.in_flight_due = -1;
      reopen(c);
      if (!c.due.empty()) send(c);
    }
  }

  void readable(Connection& c) {
    char buffer[65536];
    const ssize_t n = ::read(c.fd, buffer, sizeof buffer);
    if (n <= 0) {
      if (c.in_flight_due >= 0) ++errors_;
      c.in_flight_due = -1;
      reopen(c);
      if (!c.due.empty()) send(c);
      return;
    }
    const size_t parsed =
        http_parser_execute(&c.parser, &settings_, buffer, static_cast<size_t>(n));
    if (parsed != static_cast<size_t>(n) && !c.complete) {
      ++errors_;
      c.in_flight_due = -1;
      reopen(c);
      if (!c.due.empty()) send(c);
      return;
    }
    if (!c.complete || c.in_flight_due < 0) return;
    latencies_us_.push_back(static_cast<double>(nowNs() - c.in_flight_due) / 1000.0);
    ++completed_;
    if (c.status < 200 || c.status >= 300) ++non_2xx_;
    c.in_flight_due = -1;
    if (!c.keep_alive) reopen(c);
    if (!c.due.empty()) send(c);
  }

  Options o_;
  std::string request_;
  http_parser_settings settings_{};
  int epoll_ = -1;
  int timer_ = -1;
  std::vector<Connection> connections_;
  std::vector<double> latencies_us_;
  int64_t sent_ = 0;
  int64_t completed_ = 0;
  int64_t errors_ = 0;
  int64_t non_2xx_ = 0;
};

}  // namespace

int main(int argc, char** argv) {
  Load load(parse(argc, argv));
  load.run();
  return 0;
}
