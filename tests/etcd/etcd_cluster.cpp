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

EtcdCluster::EtcdCluster(int size) {
  for (int i = 0; i < size; ++i) {
    Member member;
    member.name = "m" + std::to_string(i);
    member.client_port = strangler::testing::freeLoopbackPort();
    member.peer_port = strangler::testing::freeLoopbackPort();
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
  const std::string client = "http://127.0.0.1:" + std::to_string(member.client_port);
  const std::string peer = "http://127.0.0.1:" + std::to_string(member.peer_port);
  // Short heartbeats and elections: a killed leader is replaced in well under a second.
  member.process =
      strangler::testing::ChildProcess::start(etcdBinary(), {"--name",
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
                                                             dir_.file(member.name + ".log")});
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
                strangler::testing::httpRequest("127.0.0.1", member.client_port, "GET", "/health",
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
                           const std::vector<std::string>& extra_args) {
  std::vector<std::string> args = {"--config",       config_url,    "--listen",  "127.0.0.1:0",
                                   "--admin-listen", "127.0.0.1:0", "--workers", "1",
                                   "--grace-ms",     "1000"};
  args.insert(args.end(), extra_args.begin(), extra_args.end());
  auto started = proxy::testing::startProxyBinary(args);
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
