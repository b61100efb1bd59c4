// Service discovery through etcd: instances registered under a lease (by `strangler register`
// or by driver-service itself) join an upstream's pool, and leave it when deregistered or, when
// killed outright, once their lease expires.
#include <gtest/gtest.h>

#include <signal.h>

#include <chrono>
#include <fstream>

#include <nlohmann/json.hpp>

#include "etcd_cluster.h"
#include "proxy_harness.h"
#include "strangler/common/etcd_client.h"
#include "strangler/proxy/config.h"
#include "strangler/testing/figures.h"

namespace strangler::etcd::testing {
namespace {

using nlohmann::json;
using proxy::testing::FakeUpstream;
using strangler::testing::ChildProcess;
using strangler::testing::runCommand;

constexpr const char* kPrefix = "/strangler/disco";
constexpr const char* kServices = "/services/driver-service";

TEST(DiscoveryConfigTest, UpstreamNeedsExactlyOneOfEndpointsAndDiscovery) {
  json config = {
      {"upstreams",
       {{"monolith", {{"endpoints", {"127.0.0.1:1"}}}},
        {"both",
         {{"endpoints", {"127.0.0.1:2"}}, {"discovery", {{"etcd_prefix", "/services/both"}}}}},
        {"neither", {{"timeout_ms", 100}}},
        {"relative", {{"discovery", {{"etcd_prefix", "services/x"}}}}}}},
      {"default_upstream", "monolith"},
      {"etcd", "http://127.0.0.1:notaport"}};
  const auto errors = proxy::ProxyConfig::validate(config);
  const auto has = [&](const std::string& text) {
    for (const auto& e : errors) {
      if (e.find(text) != std::string::npos) return true;
    }
    return false;
  };
  EXPECT_TRUE(has("upstreams.both: needs exactly one of \"endpoints\" or \"discovery\""));
  EXPECT_TRUE(has("upstreams.neither.endpoints: is required"));
  EXPECT_TRUE(has("upstreams.relative.discovery.etcd_prefix: 'services/x' must start with '/'"));
  EXPECT_TRUE(has("etcd: "));

  config["upstreams"].erase("both");
  config["upstreams"].erase("neither");
  config["upstreams"]["relative"]["discovery"]["etcd_prefix"] = "/services/x";
  config["etcd"] = "http://127.0.0.1:2379,127.0.0.1:2381";
  auto valid = proxy::ProxyConfig::create(config);
  ASSERT_TRUE(valid.ok()) << valid.error().message;
  EXPECT_EQ(valid->upstreams.at("relative").discovery_prefix, "/services/x");
  EXPECT_EQ(valid->toJson()["upstreams"]["relative"]["discovery"]["etcd_prefix"], "/services/x");
}

class EtcdDiscoveryTest : public ::testing::Test {
 protected:
  void SetUp() override {
    STRANGLER_NEED_ETCD();
    cluster_ = std::make_unique<EtcdCluster>(3);
    ASSERT_TRUE(cluster_->waitHealthy()) << "the etcd cluster did not become healthy";
    url_ = cluster_->url(kPrefix);
    const json config = {
        {"listen", "127.0.0.1:0"},
        {"admin", {{"listen", "127.0.0.1:0"}}},
        {"debug_headers", true},
        {"upstreams",
         {{"monolith", {{"endpoints", {monolith_.address()}}}},
          {"driver-service",
           {{"discovery", {{"etcd_prefix", kServices}}}, {"timeout_ms", 2000}, {"eject_ms", 0}}}}},
        {"default_upstream", "monolith"},
        {"routes",
         {{{"name", "drivers"},
           {"match", {{"path", "/api/drivers/**"}}},
           {"target", "driver-service"},
           {"stage", "extracted"}}}}};
    const std::string file = dir_.file("push.json");
    std::ofstream(file) << config.dump(2);
    const auto pushed = runCommand(STRANGLER_CLI_BIN, {"config", "push", file, "--config", url_});
    ASSERT_EQ(pushed.exit_code, 0) << pushed.output;
  }

  std::unique_ptr<ChildProcess> registerInstance(const std::string& address, int ttl) {
    auto process = ChildProcess::start(
        STRANGLER_CLI_BIN, {"register", "--service", "driver-service", "--address", address,
                            "--ttl", std::to_string(ttl), "--config", url_});
    EXPECT_TRUE(process->waitForLine("registered driver-service", std::chrono::seconds(10)))
        << process->output();
    return process;
  }

  static std::vector<std::string> endpointsOf(ProxyReplica& replica) {
    const auto routes = replica.routes();
    std::vector<std::string> out;
    if (!routes.is_object()) return out;
    for (const auto& e : routes["upstreams"]["driver-service"].value("endpoints", json::array()))
      out.push_back(e.get<std::string>());
    return out;
  }

  strangler::testing::TempDir dir_{"strangler-etcd-discovery"};
  FakeUpstream monolith_{"monolith"};
  std::unique_ptr<EtcdCluster> cluster_;
  std::string url_;
};

TEST_F(EtcdDiscoveryTest, RegisteredInstancesJoinAndLeaveThePool) {
  FakeUpstream first("instance-1");
  FakeUpstream second("instance-2");
  ProxyReplica proxy(url_);
  ASSERT_TRUE(proxy.running());
  EXPECT_TRUE(endpointsOf(proxy).empty());
  EXPECT_EQ(proxy.get("/api/drivers/1").status, 502);  // no instance yet

  auto one = registerInstance(first.address(), 2);
  auto two = registerInstance(second.address(), 2);
  ASSERT_TRUE(eventually([&] { return endpointsOf(proxy).size() == 2; }, std::chrono::seconds(5)));
  for (int i = 0; i < 10; ++i)
    EXPECT_EQ(proxy.get("/api/drivers/" + std::to_string(i)).status, 200);
  EXPECT_GT(first.count(), 0u);
  EXPECT_GT(second.count(), 0u);

  // Killed outright: nothing deregisters it, its lease expires after the TTL.
  const auto killed = std::chrono::steady_clock::now();
  one->signal(SIGKILL);
  ASSERT_TRUE(eventually([&] { return endpointsOf(proxy).size() == 1; }, std::chrono::seconds(8)));
  const double removal_ms =
      std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - killed).count();
  strangler::testing::reportFigure("etcd_killed_instance_removed_ms", removal_ms, "≈ TTL 2000",
                                   "SIGKILLed registration leaves the pool (lease TTL 2 s)");
  EXPECT_GE(removal_ms, 1000);
  EXPECT_EQ(endpointsOf(proxy), std::vector<std::string>{second.address()});
  first.clear();
  second.clear();
  for (int i = 0; i < 5; ++i)
    EXPECT_EQ(proxy.get("/api/drivers/" + std::to_string(i)).status, 200);
  EXPECT_EQ(first.count(), 0u);
  EXPECT_EQ(second.count(), 5u);

  // Stopped: the lease is revoked at once.
  const auto stopped = std::chrono::steady_clock::now();
  EXPECT_EQ(two->stop(std::chrono::seconds(5)), 0);
  ASSERT_TRUE(eventually([&] { return endpointsOf(proxy).empty(); }, std::chrono::seconds(5)));
  EXPECT_LT(std::chrono::steady_clock::now() - stopped, std::chrono::milliseconds(1500));
}

TEST_F(EtcdDiscoveryTest, DriverServiceRegistersItselfAndExpiresWhenKilled) {
  ProxyReplica proxy(url_);
  ASSERT_TRUE(proxy.running());
  auto service = ChildProcess::start(
      STRANGLER_DRIVER_SERVICE_BIN,
      {"--listen", "127.0.0.1:0", "--db", "sqlite3://db=" + dir_.file("drivers.db"), "--threads",
       "2", "--register", cluster_->url(kServices), "--register-ttl", "2"});
  const auto line = service->waitForLine("driver-service registered at", std::chrono::seconds(10));
  ASSERT_TRUE(line) << service->output();
  ASSERT_TRUE(eventually([&] { return endpointsOf(proxy).size() == 1; }, std::chrono::seconds(5)));
  const auto answer = proxy.get("/api/drivers/1");
  EXPECT_EQ(answer.header("x-strangler-upstream"), "driver-service");
  EXPECT_NE(answer.status, 502);

  service->signal(SIGKILL);
  service->wait(std::chrono::seconds(5));
  ASSERT_TRUE(eventually([&] { return endpointsOf(proxy).empty(); }, std::chrono::seconds(8)));
  EXPECT_EQ(proxy.get("/api/drivers/1").status, 502);
}

TEST_F(EtcdDiscoveryTest, FileConfigDiscoversThroughTheTopLevelEtcdKey) {
  FakeUpstream instance("instance");
  json config = {{"listen", "127.0.0.1:0"},
                 {"admin", {{"listen", "127.0.0.1:0"}}},
                 {"debug_headers", true},
                 {"upstreams",
                  {{"monolith", {{"endpoints", {monolith_.address()}}}},
                   {"driver-service", {{"discovery", {{"etcd_prefix", kServices}}}}}}},
                 {"default_upstream", "monolith"},
                 {"routes",
                  {{{"name", "drivers"},
                    {"match", {{"path", "/api/drivers/**"}}},
                    {"target", "driver-service"},
                    {"stage", "extracted"}}}}};
  // Without etcd members anywhere, discovery cannot work: refused at start.
  const std::string file = dir_.file("file.json");
  std::ofstream(file) << config.dump(2);
  const auto refused =
      runCommand(STRANGLER_PROXY_BIN, {"--config", file}, std::chrono::seconds(10));
  EXPECT_EQ(refused.exit_code, 1);

  config["etcd"] = "http://" + cluster_->endpoints();
  std::ofstream(file, std::ios::trunc) << config.dump(2);
  ProxyReplica proxy(file);
  ASSERT_TRUE(proxy.running());
  EXPECT_EQ(proxy.routes()["config_source"]["kind"], "file");
  common::EtcdClient etcd(common::parseEtcdEndpoints(cluster_->endpoints()).value());
  ASSERT_TRUE(etcd.put(std::string(kServices) + "/" + instance.address(), instance.address()).ok());
  ASSERT_TRUE(eventually([&] { return endpointsOf(proxy).size() == 1; }, std::chrono::seconds(5)));
  const auto answer = proxy.get("/api/drivers/1");
  EXPECT_EQ(answer.status, 200);
  EXPECT_EQ(instance.count(), 1u);
  ASSERT_TRUE(etcd.remove(std::string(kServices) + "/" + instance.address()).ok());
  ASSERT_TRUE(eventually([&] { return endpointsOf(proxy).empty(); }, std::chrono::seconds(5)));
}

}  // namespace
}  // namespace strangler::etcd::testing
