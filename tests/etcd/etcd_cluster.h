#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

#include "strangler/testing/http_client.h"
#include "strangler/testing/process.h"
#include "strangler/testing/temp_dir.h"

namespace strangler::etcd::testing {

/// True when the etcd binary is there; when it is not, suites skip unless STRANGLER_REQUIRE_ETCD
/// is set (then they fail).
bool etcdAvailable();
bool etcdRequired();

/// A real etcd cluster of `size` members on free loopback ports, each with its own data
/// directory in a temp dir. Members can be killed (SIGKILL) and started again on their data.
/// The destructor stops every member.
class EtcdCluster {
 public:
  struct Options {
    /// Serve clients over TLS with this certificate and key (peers stay plain).
    std::string cert_file;
    std::string key_file;
    std::vector<std::string> extra_args;
  };
  explicit EtcdCluster(int size = 3, Options options = {});
  ~EtcdCluster();
  EtcdCluster(const EtcdCluster&) = delete;
  EtcdCluster& operator=(const EtcdCluster&) = delete;

  /// Waits until every running member reports healthy (it has a leader); false on timeout.
  /// (60 s by default: three members elect a leader slowly on a machine busy with a build.)
  bool waitHealthy(std::chrono::milliseconds timeout = std::chrono::seconds(60));
  /// SIGKILLs member `i`.
  void kill(int i);
  /// Starts member `i` again on its data directory.
  void start(int i);
  /// SIGSTOPs / SIGCONTs member `i`: alive to the kernel (connections open), silent to clients.
  void pause(int i);
  void resume(int i);
  /// The member that leads now, or -1 when none of the running members knows one.
  int leader() const;
  /// The member whose client address is `member` ("127.0.0.1:P"), or -1.
  int indexOf(const std::string& member) const;
  /// gRPC calls of `method` ("Range", "Txn", "Put", "LeaseKeepAlive"...) the running members
  /// have started, summed (etcd's grpc_server_started_total, the JSON gateway included).
  int64_t calls(const std::string& method) const;
  /// The same for member `i` alone (0 while it is not running; counts restart with it).
  int64_t calls(const std::string& method, int i) const;
  uint16_t clientPort(int i) const { return members_[static_cast<size_t>(i)].client_port; }
  /// Member `i`'s client address, "127.0.0.1:P".
  std::string endpoint(int i) const { return "127.0.0.1:" + std::to_string(clientPort(i)); }
  /// Every member's client address, as "https://..." when the cluster serves TLS.
  int size() const { return static_cast<int>(members_.size()); }
  bool running(int i) const { return members_[i].process != nullptr; }

  /// "127.0.0.1:P1,127.0.0.1:P2,..." (every member's client address).
  std::string endpoints() const;
  /// etcd://ENDPOINTS/PREFIX.
  std::string url(const std::string& prefix) const { return "etcd://" + endpoints() + prefix; }

 private:
  struct Member {
    std::string name;
    uint16_t client_port = 0;
    uint16_t peer_port = 0;
    uint16_t metrics_port = 0;  ///< plain HTTP /health and /metrics
    std::unique_ptr<strangler::testing::ChildProcess> process;
  };
  strangler::testing::TempDir dir_{"strangler-etcd-test"};
  Options options_;
  std::vector<Member> members_;
  std::string initial_cluster_;
};

/// A strangler-proxy replica following an etcd URL, on free ports.
class ProxyReplica {
 public:
  explicit ProxyReplica(const std::string& config_url,
                        const std::vector<std::string>& extra_args = {},
                        const strangler::testing::ChildProcess::Env& env = {});
  ~ProxyReplica();
  bool running() const { return port_ != 0; }
  uint16_t port() const { return port_; }
  uint16_t adminPort() const { return admin_port_; }
  strangler::testing::ChildProcess& process() { return *process_; }
  /// GET /routes, parsed; null when the admin API does not answer.
  nlohmann::json routes();
  /// A request through the data path.
  strangler::testing::HttpResponse get(const std::string& target);

 private:
  std::unique_ptr<strangler::testing::ChildProcess> process_;
  uint16_t port_ = 0;
  uint16_t admin_port_ = 0;
};

/// Polls `condition` every 5 ms until it holds; false after `timeout`.
template <typename Condition>
bool eventually(Condition condition, std::chrono::milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < deadline) {
    if (condition()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  return condition();
}

}  // namespace strangler::etcd::testing

/// Skips the test without an etcd binary, or fails it when etcd is required (CI).
#define STRANGLER_NEED_ETCD()                                                     \
  do {                                                                            \
    if (!::strangler::etcd::testing::etcdAvailable()) {                           \
      if (::strangler::etcd::testing::etcdRequired())                             \
        FAIL() << "STRANGLER_REQUIRE_ETCD is set but the etcd binary is missing"; \
      GTEST_SKIP() << "etcd is not installed: etcd suite skipped";                \
    }                                                                             \
  } while (0)
