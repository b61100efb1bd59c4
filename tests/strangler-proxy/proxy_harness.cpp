#include "proxy_harness.h"

#include <Poco/Net/HTTPRequestHandler.h>
#include <Poco/Net/HTTPRequestHandlerFactory.h>
#include <Poco/Net/HTTPServer.h>
#include <Poco/Net/HTTPServerParams.h>
#include <Poco/Net/HTTPServerRequest.h>
#include <Poco/Net/HTTPServerResponse.h>
#include <Poco/Net/ServerSocket.h>
#include <Poco/StreamCopier.h>
#include <Poco/ThreadPool.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <fstream>
#include <regex>
#include <sstream>
#include <thread>

#include <gtest/gtest.h>

#ifndef STRANGLER_PROXY_BINARY
#error "STRANGLER_PROXY_BINARY must name the strangler-proxy executable"
#endif

namespace strangler::proxy::testing {
namespace {

std::string lower(std::string text) {
  std::transform(text.begin(), text.end(), text.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return text;
}

class RecordingHandler : public Poco::Net::HTTPRequestHandler {
 public:
  explicit RecordingHandler(FakeUpstream& upstream) : upstream_(upstream) {}

  void handleRequest(Poco::Net::HTTPServerRequest& request,
                     Poco::Net::HTTPServerResponse& response) override {
    const FakeUpstream::ActiveHandler active(upstream_);
    ReceivedRequest received;
    received.method = request.getMethod();
    received.uri = request.getURI();
    for (const auto& [name, value] : request)
      received.headers.emplace(lower(name), value);
    std::ostringstream body;
    Poco::StreamCopier::copyStream(request.stream(), body);
    received.body = body.str();
    nlohmann::json answer = {{"upstream", upstream_.name()},
                             {"method", received.method},
                             {"uri", received.uri},
                             {"body", received.body}};
    if (const auto responder = upstream_.responder()) answer = responder(received);
    upstream_.record(std::move(received));  // recorded on arrival, before any delay
    const int delay = upstream_.delay_ms.load();
    if (delay > 0) std::this_thread::sleep_for(std::chrono::milliseconds(delay));
    std::string text = answer.dump();
    if (const size_t padding = upstream_.padding.load(); padding > 0) {
      text.pop_back();
      text += ",\"padding\":\"" + std::string(padding, 'x') + "\"}";
    }
    response.setStatus(static_cast<Poco::Net::HTTPResponse::HTTPStatus>(upstream_.status.load()));
    response.setContentType("application/json");
    response.set("X-Upstream", upstream_.name());
    response.set("Upgrade", "h2c");  // hop-by-hop: the proxy must not relay it
    response.set("X-Strangler-Route", "spoofed-by-upstream");
    if (upstream_.chunked.load()) {
      response.setChunkedTransferEncoding(true);
    } else {
      response.setContentLength(static_cast<std::streamsize>(text.size()));
    }
    if (request.getMethod() == "HEAD") {
      response.send();
      return;
    }
    response.send() << text;
  }

 private:
  FakeUpstream& upstream_;
};

class RecordingFactory : public Poco::Net::HTTPRequestHandlerFactory {
 public:
  explicit RecordingFactory(FakeUpstream& upstream) : upstream_(upstream) {}
  Poco::Net::HTTPRequestHandler* createRequestHandler(
      const Poco::Net::HTTPServerRequest&) override {
    return new RecordingHandler(upstream_);
  }

 private:
  FakeUpstream& upstream_;
};

}  // namespace

std::string ReceivedRequest::header(const std::string& name) const {
  const auto it = headers.find(name);
  return it == headers.end() ? std::string() : it->second;
}

FakeUpstream::FakeUpstream(std::string name) : name_(std::move(name)) {
  start();
}

FakeUpstream::~FakeUpstream() {
  stop();
}

void FakeUpstream::start() {
  if (server_) return;
  Poco::Net::ServerSocket socket;
  socket.bind(Poco::Net::SocketAddress("127.0.0.1", port_), true);
  socket.listen(256);
  port_ = socket.address().port();
  auto* params = new Poco::Net::HTTPServerParams();
  // A thread per kept-alive connection: enough for an HTTP/2 client's 100 streams at once, each
  // on an upstream connection of its own (the threads start only when needed).
  params->setMaxThreads(160);
  // A dispatcher thread waits this long for work before it ends, and stopping does not always
  // wake every one of them: short, so a stop (and the test's end) does not wait 10 s for one.
  params->setThreadIdleTime(Poco::Timespan(0, 200 * 1000));
  params->setMaxQueued(256);
  params->setKeepAlive(true);
  params->setKeepAliveTimeout(Poco::Timespan(30, 0));
  socket_ = std::make_unique<Poco::Net::ServerSocket>(socket);
  // A thread pool of its own, stopped with the server (Poco's default one lives to the exit).
  pool_ = std::make_unique<Poco::ThreadPool>(2, 160);
  server_ =
      std::make_unique<Poco::Net::HTTPServer>(new RecordingFactory(*this), *pool_, socket, params);
  server_->start();
}

void FakeUpstream::stop() {
  if (!server_) return;
  // Close the listener first: without it the kernel keeps completing handshakes that nobody
  // accepts, which looks like a hung server rather than a dead one.
  socket_->close();
  server_->stopAll(true);
  // stopAll does not wait for handlers still running (a delayed answer): they use this object.
  const auto give_up = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (active_.load() > 0 && std::chrono::steady_clock::now() < give_up) {
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  server_.reset();
  pool_.reset();  // stops its idle threads
  socket_.reset();
}

std::vector<ReceivedRequest> FakeUpstream::requests() const {
  std::lock_guard lock(mutex_);
  return requests_;
}

size_t FakeUpstream::count() const {
  std::lock_guard lock(mutex_);
  return requests_.size();
}

void FakeUpstream::clear() {
  std::lock_guard lock(mutex_);
  requests_.clear();
}

void FakeUpstream::setResponder(std::function<nlohmann::json(const ReceivedRequest&)> responder) {
  std::lock_guard lock(mutex_);
  responder_ = std::move(responder);
}

std::function<nlohmann::json(const ReceivedRequest&)> FakeUpstream::responder() const {
  std::lock_guard lock(mutex_);
  return responder_;
}

void FakeUpstream::record(ReceivedRequest request) {
  std::lock_guard lock(mutex_);
  requests_.push_back(std::move(request));
}

ProxyProcess::ProxyProcess(const nlohmann::json& config,
                           const strangler::testing::ChildProcess::Env& env,
                           const std::vector<std::string>& extra_args) {
  config_path_ = dir_.file("strangler.json");
  writeConfig(config);
  std::vector<std::string> args = {"--config", config_path_, "--workers",
                                   "2",        "--grace-ms", "5000"};
  args.insert(args.end(), extra_args.begin(), extra_args.end());
  auto started = startProxyBinary(args, env);
  process_ = std::move(started.process);
  proxy_port_ = started.port;
  tls_port_ = started.tls_port;
  admin_port_ = started.admin_port;
}

ProxyProcess::~ProxyProcess() {
  if (process_) process_->stop(std::chrono::seconds(5));
}

void ProxyProcess::writeConfig(const nlohmann::json& config) {
  const std::string temp = config_path_ + ".tmp";
  {
    std::ofstream out(temp);
    out << config.dump(2);
  }
  std::filesystem::rename(temp, config_path_);
}

strangler::testing::HttpResponse ProxyProcess::get(
    const std::string& target, const std::map<std::string, std::string>& headers) {
  return request("GET", target, "", headers);
}

strangler::testing::HttpResponse ProxyProcess::request(
    const std::string& method, const std::string& target, const std::string& body,
    const std::map<std::string, std::string>& headers) {
  return strangler::testing::httpRequest("127.0.0.1", proxy_port_, method, target, body, headers,
                                         std::chrono::seconds(10));
}

strangler::testing::HttpResponse ProxyProcess::admin(
    const std::string& method, const std::string& target,
    const std::map<std::string, std::string>& headers) {
  return strangler::testing::httpRequest("127.0.0.1", admin_port_, method, target, "", headers,
                                         std::chrono::seconds(10));
}

std::string ProxyProcess::raw(const std::string& bytes) {
  return strangler::testing::rawExchange("127.0.0.1", proxy_port_, bytes, std::chrono::seconds(5));
}

StartedProxy startProxyBinary(const std::vector<std::string>& args,
                              const strangler::testing::ChildProcess::Env& env) {
  StartedProxy started;
  started.process = strangler::testing::ChildProcess::start(STRANGLER_PROXY_BINARY, args, env);
  const auto line =
      started.process->waitForLine("strangler-proxy listening on", std::chrono::seconds(10));
  if (!line) {
    ADD_FAILURE() << "strangler-proxy did not start; output:\n" << started.process->output();
    return started;
  }
  std::smatch match;
  static const std::regex kLine(
      R"(http://127\.0\.0\.1:(\d+)(?: https://127\.0\.0\.1:(\d+))? admin http://127\.0\.0\.1:(\d+))");
  if (!std::regex_search(*line, match, kLine)) {
    ADD_FAILURE() << "unexpected start line: " << *line;
    return started;
  }
  started.port = static_cast<uint16_t>(std::stoi(match[1]));
  if (match[2].matched) started.tls_port = static_cast<uint16_t>(std::stoi(match[2]));
  started.admin_port = static_cast<uint16_t>(std::stoi(match[3]));
  return started;
}

RawUpstream::RawUpstream(std::string answer, Mode mode, uint64_t stream_bytes)
    : answer_(std::move(answer)), mode_(mode), stream_bytes_(stream_bytes) {
  listen_fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  address.sin_port = 0;
  socklen_t length = sizeof address;
  if (::bind(listen_fd_, reinterpret_cast<sockaddr*>(&address), sizeof address) != 0 ||
      ::listen(listen_fd_, 64) != 0 ||
      ::getsockname(listen_fd_, reinterpret_cast<sockaddr*>(&address), &length) != 0) {
    ADD_FAILURE() << "RawUpstream: cannot listen on loopback";
    return;
  }
  port_ = ntohs(address.sin_port);
  thread_ = std::thread([this] { run(); });
}

RawUpstream::~RawUpstream() {
  stop_ = true;
  if (thread_.joinable()) thread_.join();
  if (listen_fd_ >= 0) ::close(listen_fd_);
}

std::string RawUpstream::received() const {
  std::lock_guard lock(mutex_);
  return received_;
}

void RawUpstream::run() {
  while (!stop_) {
    pollfd listening{listen_fd_, POLLIN, 0};
    if (::poll(&listening, 1, 50) <= 0) continue;
    const int fd = ::accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
    if (fd < 0) continue;
    ++connections_;
    std::string head;
    const auto give_up = std::chrono::steady_clock::now() + std::chrono::seconds(3);
    while (head.find("\r\n\r\n") == std::string::npos && !stop_ &&
           std::chrono::steady_clock::now() < give_up) {
      pollfd readable{fd, POLLIN, 0};
      if (::poll(&readable, 1, 50) <= 0) continue;
      char buffer[4096];
      const ssize_t n = ::recv(fd, buffer, sizeof buffer, 0);
      if (n <= 0) break;
      head.append(buffer, static_cast<size_t>(n));
    }
    const size_t head_end = head.find("\r\n\r\n");
    std::string answer = answer_;
    if (mode_ == Mode::kCountBody && head_end != std::string::npos) {
      std::string lower = head.substr(0, head_end);
      std::transform(lower.begin(), lower.end(), lower.begin(),
                     [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
      const size_t at = lower.find("\r\ncontent-length:");
      const uint64_t expected = at == std::string::npos ? 0 : std::stoull(lower.substr(at + 18));
      uint64_t got = head.size() - head_end - 4;
      head.resize(head_end + 4);  // the body is counted, not kept
      char buffer[65536];
      while (got < expected && !stop_) {
        pollfd readable{fd, POLLIN, 0};
        if (::poll(&readable, 1, 3000) <= 0) break;
        const ssize_t n = ::recv(fd, buffer, sizeof buffer, 0);
        if (n <= 0) break;
        got += static_cast<uint64_t>(n);
      }
      const std::string count = std::to_string(got);
      answer = "HTTP/1.1 200 OK\r\nContent-Length: " + std::to_string(count.size()) +
               "\r\nConnection: close\r\n\r\n" + count;
    }
    {
      std::lock_guard lock(mutex_);
      received_ += head;
    }
    if (mode_ == Mode::kStreamBody) {
      answer = "HTTP/1.1 200 OK\r\nContent-Length: " + std::to_string(stream_bytes_) +
               "\r\nConnection: close\r\n\r\n";
    }
    [[maybe_unused]] ssize_t sent = ::send(fd, answer.data(), answer.size(), MSG_NOSIGNAL);
    if (mode_ == Mode::kStreamBody) {
      const std::string piece(65536, 'd');
      for (uint64_t left = stream_bytes_; left > 0 && !stop_;) {
        const size_t size = static_cast<size_t>(std::min<uint64_t>(left, piece.size()));
        sent = ::send(fd, piece.data(), size, MSG_NOSIGNAL);
        if (sent <= 0) break;
        left -= static_cast<uint64_t>(sent);
      }
    }
    ::shutdown(fd, SHUT_WR);
    ::close(fd);
  }
}

nlohmann::json baseConfig(const FakeUpstream& monolith) {
  return nlohmann::json{
      {"listen", "127.0.0.1:0"},
      {"admin", {{"listen", "127.0.0.1:0"}, {"token_env", "STRANGLER_TEST_ADMIN_TOKEN"}}},
      {"debug_headers", true},
      {"upstreams",
       {{monolith.name(), {{"endpoints", {monolith.address()}}, {"timeout_ms", 3000}}}}},
      {"default_upstream", monolith.name()},
      {"routes", nlohmann::json::array()}};
}

void addUpstream(nlohmann::json& config, const FakeUpstream& upstream,
                 const nlohmann::json& extra) {
  nlohmann::json entry = {{"endpoints", {upstream.address()}}, {"timeout_ms", 3000}};
  entry.update(extra);
  config["upstreams"][upstream.name()] = entry;
}

int rawStatus(const std::string& answer) {
  if (answer.compare(0, 9, "HTTP/1.1 ") != 0 || answer.size() < 12) return 0;
  return std::atoi(answer.substr(9, 3).c_str());
}

double metricValue(ProxyProcess& proxy, const std::string& series) {
  const std::string text = proxy.admin("GET", "/metrics").body;
  const size_t at = text.find("\n" + series + " ");
  if (at == std::string::npos) return 0;
  return std::stod(text.substr(at + series.size() + 2));
}

uint64_t peakRss(int pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/status");
  for (std::string line; std::getline(in, line);) {
    if (line.rfind("VmHWM:", 0) == 0) return std::stoull(line.substr(6)) * 1024;
  }
  return 0;
}

/// Runs `binary args...` with its stderr folded into what is returned (openssl s_client and the
/// proxy's own errors write there).
strangler::common::CommandResult withStderr(const std::string& binary,
                                            const std::vector<std::string>& args,
                                            std::chrono::milliseconds timeout) {
  std::string command = "exec '" + binary + "'";
  for (const auto& arg : args)
    command += " '" + arg + "'";
  return strangler::testing::runCommand("/bin/sh", {"-c", command + " 2>&1"}, timeout);
}

/// A self-signed certificate (ECDSA P-256), subject CN=`name`, for `san` (127.0.0.1 by default).
void makeCertificate(const std::string& cert, const std::string& key, const std::string& name,
                     const std::string& san) {
  const auto made = strangler::testing::runCommand(
      "/usr/bin/openssl", {"req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
                           "-nodes", "-days", "1", "-subj", "/CN=" + name, "-addext",
                           "subjectAltName=" + san, "-keyout", key, "-out", cert});
  ASSERT_EQ(made.exit_code, 0) << made.output;
}

/// A blocking TCP connection to 127.0.0.1:`port` with a receive timeout of `timeout_s`; -1 when
/// the connect fails.
int connectLoopback(uint16_t port, int timeout_s) {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  timeval timeout{timeout_s, 0};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof timeout);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_port = htons(port);
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&address), sizeof address) == 0) return fd;
  ::close(fd);
  return -1;
}

}  // namespace strangler::proxy::testing
