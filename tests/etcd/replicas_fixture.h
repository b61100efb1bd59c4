#pragma once
// The fixture of the replica suites: a real 3-member etcd cluster, two fake upstreams, a base
// config with two routes, and the real CLI on the cluster's URL.
#include <gtest/gtest.h>

#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "etcd_cluster.h"
#include "proxy_harness.h"
#include "strangler/common/etcd_client.h"

namespace strangler::etcd::testing {

inline constexpr const char* kPrefix = "/strangler/test";

class EtcdReplicasTest : public ::testing::Test {
 protected:
  void SetUp() override {
    STRANGLER_NEED_ETCD();
    cluster_ = std::make_unique<EtcdCluster>(3);
    ASSERT_TRUE(cluster_->waitHealthy()) << "the etcd cluster did not become healthy";
    url_ = cluster_->url(kPrefix);
  }

  nlohmann::json baseConfig() {
    return {{"listen", "127.0.0.1:0"},
            {"admin", {{"listen", "127.0.0.1:0"}}},
            {"debug_headers", true},
            {"upstreams",
             {{"monolith", {{"endpoints", {monolith_.address()}}, {"timeout_ms", 2000}}},
              {"driver-service", {{"endpoints", {service_.address()}}, {"timeout_ms", 2000}}}}},
            {"default_upstream", "monolith"},
            {"routes",
             {{{"name", "drivers"},
               {"match", {{"path", "/api/drivers/**"}}},
               {"target", "driver-service"},
               {"stage", "monolith"}},
              {{"name", "trips"},
               {"match", {{"path", "/api/trips/**"}}},
               {"target", "driver-service"},
               {"stage", "monolith"}}}}};
  }

  strangler::testing::CommandResult cli(std::vector<std::string> args) {
    args.insert(args.begin(), {"--config", url_});
    return strangler::testing::runCommand(STRANGLER_CLI_BIN, args, std::chrono::seconds(30),
                                          {{"STRANGLER_USER", "tester"}});
  }

  void push(const nlohmann::json& config) {
    const std::string file = dir_.file("push.json");
    std::ofstream(file) << config.dump(2);
    const auto pushed = cli({"config", "push", file});
    ASSERT_EQ(pushed.exit_code, 0) << pushed.output;
  }

  common::EtcdClient client() { return common::EtcdClient(common::parseEtcdUrl(url_)->endpoints); }

  static std::string stepOf(const nlohmann::json& routes, const std::string& name) {
    if (!routes.is_object()) return "(no answer)";
    for (const auto& r : routes.value("routes", nlohmann::json::array())) {
      if (r.value("name", "") != name) continue;
      const std::string stage = r.value("stage", "");
      return stage == "canary" ? "canary " + std::to_string(r.value("percent", 0)) : stage;
    }
    return "(no route)";
  }

  static std::string upstreamOf(const strangler::testing::HttpResponse& answer) {
    return answer.header("x-strangler-upstream");
  }

  strangler::testing::TempDir dir_{"strangler-etcd-replicas"};
  proxy::testing::FakeUpstream monolith_{"monolith"};
  proxy::testing::FakeUpstream service_{"driver-service"};
  std::unique_ptr<EtcdCluster> cluster_;
  std::string url_;
};

}  // namespace strangler::etcd::testing
