#include "etcd_cluster.h"

#include "proxy_harness.h"

#include <signal.h>
#include <unistd.h>

#include <cstdlib>
#include <regex>
#include <thread>

#include <gtest/gtest.h>

namespace strangler::etcd::testing {
namespace {

// Debian's etcd-server package; STRANGLER_ETCD_BIN names another.
std::string etcdBinary() {
  const char* value = std::getenv("STRANGLER_ETCD_BIN");
  return value != nullptr && *value != '\0' ? value : "/usr/bin/etcd";
}

}  // namespace

bool etcdAvailable() {
  return ::access(etcdBinary().c_str(), X_OK) == 0;
}

bool etcdRequired() {
  const char* value = std::getenv("STRANGLER_REQUIRE_ETCD");
  return value != nullptr && std::string(value) == "1";
}

EtcdCluster::EtcdCluster(int size, Options options) : options_(std::move(options)) {
  for (int i = 0; i < size; ++i) {
    Member member;
    member.name = "m" + std::to_string(i);
    member.client_port = strangler::testing::freeLoopbackPort();
    member.peer_port = strangler::testing::freeLoopbackPort();
    member.metrics_port = strangler::testing::freeLoopbackPort();
    initial_cluster_ +=
        (i ? "," : "") + member.name + "=http://127.0.0.1:" + std::to_string(member.peer_port);
    members_.push_back(std::move(member));
  }
  for (int i = 0; i < size; ++i)
    start(i);
}

EtcdCluster::~EtcdCluster() {
  for (auto& member : members_) {
    if (member.process) member.process->stop(std::chrono::seconds(3));
  }
}

void EtcdCluster::start(int i) {
  auto& member = members_[static_cast<size_t>(i)];
  if (member.process) return;
  const bool tls = !options_.cert_file.empty();
  const std::string client =
      (tls ? "https://127.0.0.1:" : "http://127.0.0.1:") + std::to_string(member.client_port);
  const std::string peer = "http://127.0.0.1:" + std::to_string(member.peer_port);
  std::vector<std::string> args = {"--listen-metrics-urls",
                                   "http://127.0.0.1:" + std::to_string(member.metrics_port)};
  if (tls) {
    for (const std::string& arg : {std::string("--cert-file"), options_.cert_file,
                                   std::string("--key-file"), options_.key_file})
      args.push_back(arg);
  }
  args.insert(args.end(), options_.extra_args.begin(), options_.extra_args.end());
  // Short heartbeats and elections: a killed leader is replaced in well under a second.
  std::vector<std::string> common = {"--name",
                                     member.name,
                                     "--data-dir",
                                     dir_.file(member.name),
                                     "--listen-client-urls",
                                     client,
                                     "--advertise-client-urls",
                                     client,
                                     "--listen-peer-urls",
                                     peer,
                                     "--initial-advertise-peer-urls",
                                     peer,
                                     "--initial-cluster",
                                     initial_cluster_,
                                     "--initial-cluster-state",
                                     "new",
                                     "--initial-cluster-token",
                                     "strangler-test",
                                     "--heartbeat-interval",
                                     "50",
                                     "--election-timeout",
                                     "500",
                                     "--logger",
                                     "zap",
                                     "--log-outputs",
                                     dir_.file(member.name + ".log")};
  common.insert(common.end(), args.begin(), args.end());
  member.process = strangler::testing::ChildProcess::start(etcdBinary(), common);
}

void EtcdCluster::pause(int i) {
  auto& member = members_[static_cast<size_t>(i)];
  if (member.process) member.process->signal(SIGSTOP);
}

void EtcdCluster::resume(int i) {
  auto& member = members_[static_cast<size_t>(i)];
  if (member.process) member.process->signal(SIGCONT);
}

namespace {

// GET on a member's plain metrics listener; empty when it does not answer.
std::string metricsGet(uint16_t port, const std::string& path) {
  try {
    const auto answer = strangler::testing::httpRequest("127.0.0.1", port, "GET", path, "", {},
                                                        std::chrono::milliseconds(1000));
    return answer.status == 200 ? answer.body : "";
  } catch (const std::exception&) {
    return "";
  }
}

}  // namespace

int EtcdCluster::leader() const {
  // etcd_server_is_leader is 1 on the leader only.
  for (size_t i = 0; i < members_.size(); ++i) {
    if (!members_[i].process) continue;
    const std::string metrics = metricsGet(members_[i].metrics_port, "/metrics");
    if (metrics.find("\netcd_server_is_leader 1") != std::string::npos) return static_cast<int>(i);
  }
  return -1;
}

int EtcdCluster::indexOf(const std::string& member) const {
  for (size_t i = 0; i < members_.size(); ++i) {
    if (member == "127.0.0.1:" + std::to_string(members_[i].client_port))
      return static_cast<int>(i);
  }
  return -1;
}

int64_t EtcdCluster::calls(const std::string& method, int i) const {
  const auto& member = members_[static_cast<size_t>(i)];
  if (!member.process) return 0;
  int64_t total = 0;
  const std::regex line("grpc_server_started_total\\{[^}]*grpc_method=\"" + method +
                        "\"[^}]*\\} ([0-9]+)");
  const std::string metrics = metricsGet(member.metrics_port, "/metrics");
  for (std::sregex_iterator it(metrics.begin(), metrics.end(), line), end; it != end; ++it)
    total += std::stoll((*it)[1].str());
  return total;
}

int64_t EtcdCluster::calls(const std::string& method) const {
  int64_t total = 0;
  for (int i = 0; i < size(); ++i)
    total += calls(method, i);
  return total;
}

void EtcdCluster::kill(int i) {
  auto& member = members_[static_cast<size_t>(i)];
  if (!member.process) return;
  member.process->signal(SIGKILL);
  member.process->wait(std::chrono::seconds(5));
  member.process.reset();
}

bool EtcdCluster::waitHealthy(std::chrono::milliseconds timeout) {
  return eventually(
      [&] {
        for (const auto& member : members_) {
          if (!member.process) continue;
          try {
            const auto answer =
                strangler::testing::httpRequest("127.0.0.1", member.metrics_port, "GET", "/health",
                                                "", {}, std::chrono::milliseconds(500));
            if (answer.status != 200 || answer.body.find("\"true\"") == std::string::npos)
              return false;
          } catch (const std::exception&) {
            return false;  // not listening yet
          }
        }
        return true;
      },
      timeout);
}

std::string EtcdCluster::endpoints() const {
  std::string text;
  for (const auto& member : members_)
    text +=
        (text.empty() ? "" : ",") + std::string("127.0.0.1:") + std::to_string(member.client_port);
  return text;
}

ProxyReplica::ProxyReplica(const std::string& config_url,
                           const std::vector<std::string>& extra_args,
                           const strangler::testing::ChildProcess::Env& env) {
  std::vector<std::string> args = {"--config",       config_url,    "--listen",  "127.0.0.1:0",
                                   "--admin-listen", "127.0.0.1:0", "--workers", "1",
                                   "--grace-ms",     "1000"};
  args.insert(args.end(), extra_args.begin(), extra_args.end());
  auto started = proxy::testing::startProxyBinary(args, env);
  process_ = std::move(started.process);
  port_ = started.port;
  admin_port_ = started.admin_port;
}

ProxyReplica::~ProxyReplica() {
  if (process_) process_->stop(std::chrono::seconds(3));
}

nlohmann::json ProxyReplica::routes() {
  try {
    const auto answer = strangler::testing::httpRequest("127.0.0.1", admin_port_, "GET", "/routes",
                                                        "", {}, std::chrono::seconds(2));
    if (answer.status != 200) return nullptr;
    return nlohmann::json::parse(answer.body, nullptr, false);
  } catch (const std::exception&) {
    return nullptr;
  }
}

strangler::testing::HttpResponse ProxyReplica::get(const std::string& target) {
  return strangler::testing::httpRequest("127.0.0.1", port_, "GET", target, "", {},
                                         std::chrono::seconds(5));
}

}  // namespace strangler::etcd::testing
