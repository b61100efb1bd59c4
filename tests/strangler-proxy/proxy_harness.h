#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

#include "strangler/testing/http_client.h"
#include "strangler/testing/process.h"
#include "strangler/testing/temp_dir.h"

namespace Poco {
class ThreadPool;
}  // namespace Poco

namespace Poco::Net {
class HTTPServer;
class ServerSocket;
}  // namespace Poco::Net

namespace strangler::proxy::testing {

/// A request as a fake upstream received it.
struct ReceivedRequest {
  std::string method;
  std::string uri;
  std::multimap<std::string, std::string> headers;  ///< names lower-cased
  std::string body;

  /// The first header of that (lower-case) name, or "".
  std::string header(const std::string& name) const;
  bool has(const std::string& name) const { return headers.count(name) > 0; }
};

/// An in-process HTTP server (Poco) on a loopback port that records what it receives and
/// answers `{"upstream": NAME, "method": ..., "uri": ..., "body": ...}`; it can be told to
/// answer with another status, slowly, chunked, or to go away (stop) and come back (start).
class FakeUpstream {
 public:
  explicit FakeUpstream(std::string name);
  ~FakeUpstream();

  uint16_t port() const { return port_; }
  std::string address() const { return "127.0.0.1:" + std::to_string(port_); }
  const std::string& name() const { return name_; }
  /// Closes the listener and every connection: connects are then refused.
  void stop();
  /// Listens again on the same port.
  void start();

  std::vector<ReceivedRequest> requests() const;
  size_t count() const;
  void clear();

  std::atomic<int> status{200};
  std::atomic<int> delay_ms{0};
  std::atomic<bool> chunked{false};
  std::atomic<size_t> padding{0};  ///< extra body bytes, to test large responses

  /// Makes the upstream answer with `responder(request)` as its JSON body instead of the
  /// default echo (status, delay and headers still apply). Empty function: back to the echo.
  void setResponder(std::function<nlohmann::json(const ReceivedRequest&)> responder);
  std::function<nlohmann::json(const ReceivedRequest&)> responder() const;

  /// Called by the handler.
  void record(ReceivedRequest request);

  /// Counts a handler running (stop() waits for them).
  class ActiveHandler {
   public:
    explicit ActiveHandler(FakeUpstream& upstream) : upstream_(upstream) { ++upstream_.active_; }
    ~ActiveHandler() { --upstream_.active_; }
    ActiveHandler(const ActiveHandler&) = delete;
    ActiveHandler& operator=(const ActiveHandler&) = delete;

   private:
    FakeUpstream& upstream_;
  };

 private:
  std::string name_;
  uint16_t port_ = 0;
  std::unique_ptr<Poco::Net::ServerSocket> socket_;
  std::unique_ptr<Poco::ThreadPool> pool_;
  std::unique_ptr<Poco::Net::HTTPServer> server_;
  mutable std::mutex mutex_;
  std::vector<ReceivedRequest> requests_;
  std::function<nlohmann::json(const ReceivedRequest&)> responder_;
  std::atomic<int> active_{0};
};

/// A loopback TCP server that answers every request with bytes the test gives, byte for byte
/// (answers no well-behaved server would send), and keeps every byte it received. It reads a
/// request up to the end of its head, answers, and closes the connection.
class RawUpstream {
 public:
  /// kAnswer: `answer` as given. kCountBody: reads the request's Content-Length body (not kept)
  /// and answers 200 with the count as its body. kStreamBody: answers 200 with `stream_bytes`
  /// bytes of body, written as the socket takes them.
  enum class Mode { kAnswer, kCountBody, kStreamBody };
  explicit RawUpstream(std::string answer, Mode mode = Mode::kAnswer, uint64_t stream_bytes = 0);
  ~RawUpstream();
  RawUpstream(const RawUpstream&) = delete;
  RawUpstream& operator=(const RawUpstream&) = delete;

  std::string address() const { return "127.0.0.1:" + std::to_string(port_); }
  /// Everything received so far, all connections in order.
  std::string received() const;
  size_t connections() const { return connections_.load(); }

 private:
  void run();

  std::string answer_;
  Mode mode_ = Mode::kAnswer;
  uint64_t stream_bytes_ = 0;
  int listen_fd_ = -1;
  uint16_t port_ = 0;
  std::atomic<bool> stop_{false};
  std::atomic<size_t> connections_{0};
  mutable std::mutex mutex_;
  std::string received_;
  std::thread thread_;
};

/// The real strangler-proxy binary, started on port 0 with a config written to a temp dir.
class ProxyProcess {
 public:
  /// Starts the proxy; fails the calling test (ADD_FAILURE) when it does not come up.
  explicit ProxyProcess(const nlohmann::json& config,
                        const strangler::testing::ChildProcess::Env& env = {},
                        const std::vector<std::string>& extra_args = {});
  ~ProxyProcess();

  bool running() const { return proxy_port_ != 0; }
  uint16_t port() const { return proxy_port_; }
  uint16_t tlsPort() const { return tls_port_; }  ///< 0 without "tls"
  uint16_t adminPort() const { return admin_port_; }
  strangler::testing::ChildProcess& process() { return *process_; }
  /// Rewrites the config file (for reloads).
  void writeConfig(const nlohmann::json& config);
  const std::string& configPath() const { return config_path_; }

  strangler::testing::HttpResponse get(const std::string& target,
                                       const std::map<std::string, std::string>& headers = {});
  strangler::testing::HttpResponse request(const std::string& method, const std::string& target,
                                           const std::string& body = "",
                                           const std::map<std::string, std::string>& headers = {});
  strangler::testing::HttpResponse admin(const std::string& method, const std::string& target,
                                         const std::map<std::string, std::string>& headers = {});
  /// Sends raw bytes to the proxy and returns everything it answers.
  std::string raw(const std::string& bytes);

 private:
  strangler::testing::TempDir dir_{"strangler-proxy-test"};
  std::string config_path_;
  std::unique_ptr<strangler::testing::ChildProcess> process_;
  uint16_t proxy_port_ = 0;
  uint16_t tls_port_ = 0;
  uint16_t admin_port_ = 0;
};

/// A started strangler-proxy process and the ports it printed.
struct StartedProxy {
  std::unique_ptr<strangler::testing::ChildProcess> process;
  uint16_t port = 0;      ///< 0 when it did not come up (the test has failed already)
  uint16_t tls_port = 0;  ///< the HTTPS listener's, 0 without one
  uint16_t admin_port = 0;
};
/// Starts the strangler-proxy binary with `args` and reads its "listening on" line; fails the
/// calling test (ADD_FAILURE) when it does not come up.
StartedProxy startProxyBinary(const std::vector<std::string>& args,
                              const strangler::testing::ChildProcess::Env& env = {});

/// A config with `monolith` (and the given extra upstreams) on loopback, proxy and admin on port 0.
nlohmann::json baseConfig(const FakeUpstream& monolith);
/// Adds an upstream named after `upstream` to `config`.
void addUpstream(nlohmann::json& config, const FakeUpstream& upstream,
                 const nlohmann::json& extra = nlohmann::json::object());

/// The first status code in a raw HTTP answer, or 0.
int rawStatus(const std::string& answer);

/// The value of one series in the proxy's /metrics ("name{labels}"), 0 when absent.
double metricValue(ProxyProcess& proxy, const std::string& series);

/// A process's peak resident memory (VmHWM), in bytes; 0 when unknown.
uint64_t peakRss(int pid);

/// Polls `condition` for up to five seconds; true once it holds.
template <typename Condition>
bool waitFor(Condition condition) {
  const auto give_up = std::chrono::steady_clock::now() + std::chrono::seconds(5);
  while (!condition()) {
    if (std::chrono::steady_clock::now() > give_up) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  return true;
}

/// Runs `binary args...` with its stderr folded into what is returned (openssl s_client, curl
/// and the proxy's own errors write there).
strangler::common::CommandResult withStderr(
    const std::string& binary, const std::vector<std::string>& args,
    std::chrono::milliseconds timeout = std::chrono::seconds(20));

/// A self-signed certificate (ECDSA P-256), subject CN=`name`, for `san` (127.0.0.1 by default).
void makeCertificate(const std::string& cert, const std::string& key, const std::string& name,
                     const std::string& san = "IP:127.0.0.1");

/// A blocking TCP connection to 127.0.0.1:`port` with a receive timeout of `timeout_s`; -1 when
/// the connect fails.
int connectLoopback(uint16_t port, int timeout_s);

}  // namespace strangler::proxy::testing
