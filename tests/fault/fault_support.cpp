#include "fault_support.h"

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <sstream>

#ifndef STRANGLER_PYTHON3
#error "STRANGLER_PYTHON3 must name the Python interpreter"
#endif
#ifndef STRANGLER_FAKE_BACKEND
#error "STRANGLER_FAKE_BACKEND must name tests/strangler-proxy/fake_backend.py"
#endif

namespace strangler::fault {
namespace {

std::string lower(std::string text) {
  std::transform(text.begin(), text.end(), text.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return text;
}

// One blocking loopback connection with send and receive timeouts.
class Connection {
 public:
  Connection(uint16_t port, std::chrono::milliseconds timeout) {
    fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd_ < 0) return;
    timeval tv{};
    tv.tv_sec = static_cast<time_t>(timeout.count() / 1000);
    tv.tv_usec = static_cast<suseconds_t>((timeout.count() % 1000) * 1000);
    ::setsockopt(fd_, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    ::setsockopt(fd_, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    const int one = 1;
    ::setsockopt(fd_, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    sockaddr_in address{};
    address.sin_family = AF_INET;
    address.sin_port = htons(port);
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (::connect(fd_, reinterpret_cast<const sockaddr*>(&address), sizeof address) != 0) {
      ::close(fd_);
      fd_ = -1;
    }
  }
  ~Connection() {
    if (fd_ >= 0) ::close(fd_);
  }
  Connection(const Connection&) = delete;
  Connection& operator=(const Connection&) = delete;

  bool open() const { return fd_ >= 0; }

  bool sendAll(const std::string& bytes) {
    size_t sent = 0;
    while (sent < bytes.size()) {
      const ssize_t n = ::send(fd_, bytes.data() + sent, bytes.size() - sent, MSG_NOSIGNAL);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) return false;
      sent += static_cast<size_t>(n);
    }
    return true;
  }

  // Reads one whole response. Returns its status (0 on failure); sets `upstream` and `close`.
  int readResponse(bool head_request, std::string& upstream, bool& close) {
    size_t head_end = std::string::npos;
    while ((head_end = buffer_.find("\r\n\r\n")) == std::string::npos) {
      if (!fill()) return 0;
    }
    const std::string head = buffer_.substr(0, head_end);
    buffer_.erase(0, head_end + 4);
    if (head.compare(0, 5, "HTTP/") != 0 || head.size() < 12) return 0;
    const int status = std::atoi(head.c_str() + 9);
    int64_t length = -1;
    bool chunked = false;
    close = head.compare(0, 8, "HTTP/1.0") == 0;
    std::istringstream lines(head);
    std::string line;
    std::getline(lines, line);
    while (std::getline(lines, line)) {
      if (!line.empty() && line.back() == '\r') line.pop_back();
      const size_t colon = line.find(':');
      if (colon == std::string::npos) continue;
      const std::string name = lower(line.substr(0, colon));
      std::string value = line.substr(colon + 1);
      value.erase(0, value.find_first_not_of(' '));
      if (name == "content-length") length = std::atoll(value.c_str());
      if (name == "transfer-encoding" && lower(value).find("chunked") != std::string::npos)
        chunked = true;
      if (name == "connection" && lower(value) == "close") close = true;
      if (name == "x-strangler-upstream") upstream = value;
    }
    if (head_request || status == 204 || status == 304 || (status >= 100 && status < 200))
      return status;
    if (chunked) return readChunked() ? status : 0;
    if (length >= 0) {
      while (buffer_.size() < static_cast<size_t>(length)) {
        if (!fill()) return 0;
      }
      buffer_.erase(0, static_cast<size_t>(length));
      return status;
    }
    while (fill()) {
    }
    buffer_.clear();
    close = true;
    return status;
  }

 private:
  bool fill() {
    char chunk[16384];
    for (;;) {
      const ssize_t n = ::recv(fd_, chunk, sizeof chunk, 0);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) return false;
      buffer_.append(chunk, static_cast<size_t>(n));
      return true;
    }
  }

  bool readLine(std::string& line) {
    size_t eol;
    while ((eol = buffer_.find("\r\n")) == std::string::npos) {
      if (!fill()) return false;
    }
    line = buffer_.substr(0, eol);
    buffer_.erase(0, eol + 2);
    return true;
  }

  bool readChunked() {
    std::string line;
    for (;;) {
      if (!readLine(line)) return false;
      const size_t size = std::strtoul(line.c_str(), nullptr, 16);
      if (size == 0) {
        do {  // trailers, up to the empty line
          if (!readLine(line)) return false;
        } while (!line.empty());
        return true;
      }
      while (buffer_.size() < size + 2) {
        if (!fill()) return false;
      }
      buffer_.erase(0, size + 2);
    }
  }

  int fd_ = -1;
  std::string buffer_;
};

std::chrono::microseconds percentile(const std::vector<std::chrono::microseconds>& sorted,
                                     double p) {
  if (sorted.empty()) return std::chrono::microseconds(0);
  const auto rank = static_cast<size_t>(std::ceil(p * static_cast<double>(sorted.size())));
  return sorted[std::min(rank == 0 ? 0 : rank - 1, sorted.size() - 1)];
}

}  // namespace

bool fullRun() {
  const char* value = std::getenv("STRANGLER_FAULT_FULL");
  return value != nullptr && std::string(value) == "1";
}

double metricSum(const std::string& metrics_text, const std::string& prefix) {
  double sum = 0;
  std::istringstream lines(metrics_text);
  for (std::string line; std::getline(lines, line);) {
    if (line.compare(0, prefix.size(), prefix) != 0) continue;
    const size_t space = line.rfind(' ');
    if (space == std::string::npos) continue;
    sum += std::strtod(line.c_str() + space + 1, nullptr);
  }
  return sum;
}

std::string LoadTotals::describe() const {
  std::ostringstream out;
  out << requests << " requests, " << clientErrors() << " client-visible errors ("
      << transport_errors << " without an answer), statuses {";
  for (const auto& [status, count] : statuses)
    out << " " << status << ": " << count;
  out << " }, upstreams {";
  for (const auto& [upstream, count] : upstreams)
    out << " " << upstream << ": " << count;
  out << " }, latency p50 " << static_cast<double>(p50.count()) / 1000.0 << " ms, p99 "
      << static_cast<double>(p99.count()) / 1000.0 << " ms, max "
      << static_cast<double>(max.count()) / 1000.0 << " ms";
  return out.str();
}

LoadGenerator::LoadGenerator(Options options, Observer observer)
    : options_(std::move(options)), observer_(std::move(observer)) {}

LoadGenerator::~LoadGenerator() {
  stop();
}

void LoadGenerator::start() {
  for (int i = 0; i < options_.connections; ++i)
    threads_.emplace_back([this, i] { run(i); });
}

LoadTotals LoadGenerator::stop() {
  stop_ = true;
  for (auto& thread : threads_)
    if (thread.joinable()) thread.join();
  std::lock_guard lock(mutex_);
  if (stopped_) return totals_;
  stopped_ = true;
  std::vector<std::chrono::microseconds> latencies;
  for (const auto& response : log_) {
    ++totals_.requests;
    if (response.status == 0) {
      ++totals_.transport_errors;
      continue;
    }
    ++totals_.statuses[response.status];
    if (!response.upstream.empty()) ++totals_.upstreams[response.upstream];
    if (response.status >= 200 && response.status < 300) {
      ++totals_.ok;
    } else {
      ++totals_.http_errors;
    }
    latencies.push_back(response.latency);
  }
  std::sort(latencies.begin(), latencies.end());
  totals_.p50 = percentile(latencies, 0.50);
  totals_.p99 = percentile(latencies, 0.99);
  totals_.max = latencies.empty() ? std::chrono::microseconds(0) : latencies.back();
  log_.clear();
  return totals_;
}

void LoadGenerator::run(int index) {
  std::unique_ptr<Connection> connection;
  std::vector<LoadResponse> local;
  const bool head = options_.method == "HEAD";
  for (int64_t n = 0; !stop_; ++n) {
    if (!connection || !connection->open())
      connection = std::make_unique<Connection>(options_.port, options_.timeout);
    std::string request = options_.method + " " + options_.path_prefix + std::to_string(index) +
                          "-" + std::to_string(n) + " HTTP/1.1\r\nHost: fault.test\r\n";
    if (!options_.body.empty() || options_.method == "POST" || options_.method == "PUT") {
      request += "Content-Type: application/json\r\nContent-Length: " +
                 std::to_string(options_.body.size()) + "\r\n";
    }
    request += "\r\n" + options_.body;
    LoadResponse response;
    const auto started = Clock::now();
    bool close = false;
    if (connection->open() && connection->sendAll(request))
      response.status = connection->readResponse(head, response.upstream, close);
    response.at = Clock::now();
    response.latency = std::chrono::duration_cast<std::chrono::microseconds>(response.at - started);
    if (response.status == 0 || close) connection.reset();
    ++requests_;
    if (observer_) observer_(response);
    local.push_back(std::move(response));
    if (options_.pause.count() > 0) std::this_thread::sleep_for(options_.pause);
  }
  std::lock_guard lock(mutex_);
  log_.insert(log_.end(), local.begin(), local.end());
}

BackendProcess::BackendProcess(const std::string& name, uint16_t port) {
  process_ = strangler::testing::ChildProcess::start(
      STRANGLER_PYTHON3, {STRANGLER_FAKE_BACKEND, name, std::to_string(port)});
  const auto line = process_->waitForLine("listening on 127.0.0.1:", std::chrono::seconds(10));
  if (line) port_ = static_cast<uint16_t>(std::stoi(line->substr(line->rfind(':') + 1)));
}

}  // namespace strangler::fault
