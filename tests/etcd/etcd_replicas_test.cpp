// Several strangler-proxy replicas sharing one config in a real 3-member etcd cluster, edited by
// the real `strangler` CLI: propagation, a killed member, the whole cluster down, concurrent
// edits.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <fstream>
#include <iostream>
#include <set>
#include <thread>

#include <nlohmann/json.hpp>

#include "etcd_cluster.h"
#include "proxy_harness.h"
#include "replicas_fixture.h"
#include "strangler/common/etcd_client.h"
#include "strangler/testing/figures.h"

namespace strangler::etcd::testing {
namespace {

using nlohmann::json;
using proxy::testing::FakeUpstream;
using strangler::testing::runCommand;

TEST(EtcdUrlTest, ParsesEveryMemberAndThePrefix) {
  auto parsed = common::parseEtcdUrl("etcd://127.0.0.1:2379,127.0.0.1:2381/strangler/prod/");
  ASSERT_TRUE(parsed.ok()) << parsed.error().message;
  ASSERT_EQ(parsed->endpoints.size(), 2u);
  EXPECT_EQ(parsed->endpoints[1].port, 2381);
  EXPECT_EQ(parsed->prefix, "/strangler/prod");
  EXPECT_EQ(parsed->key("config"), "/strangler/prod/config");
  EXPECT_EQ(parsed->url(), "etcd://127.0.0.1:2379,127.0.0.1:2381/strangler/prod");
  EXPECT_FALSE(common::parseEtcdUrl("etcd://127.0.0.1:2379").ok());       // no prefix
  EXPECT_FALSE(common::parseEtcdUrl("etcd://127.0.0.1/strangler").ok());  // no port
  EXPECT_FALSE(common::parseEtcdUrl("http://127.0.0.1:2379/strangler").ok());
  auto members = common::parseEtcdEndpoints("http://127.0.0.1:2379,http://[::1]:2380/");
  ASSERT_TRUE(members.ok()) << members.error().message;
  EXPECT_EQ(members->size(), 2u);
  EXPECT_EQ(common::EtcdClient::prefixEnd("/services/a/"), "/services/a0");
}

TEST_F(EtcdReplicasTest, RouteChangeReachesEveryReplica) {
  push(baseConfig());
  ProxyReplica a(url_);
  ProxyReplica b(url_);
  ASSERT_TRUE(a.running() && b.running());
  EXPECT_EQ(upstreamOf(a.get("/api/drivers/1")), "monolith");
  EXPECT_EQ(a.routes()["config_source"]["kind"], "etcd");

  // End to end: the operator's command until both replicas serve the new step.
  const auto cli_start = std::chrono::steady_clock::now();
  const auto extracted = cli({"routes", "extract", "drivers"});
  ASSERT_EQ(extracted.exit_code, 0) << extracted.output;
  ASSERT_TRUE(eventually(
      [&] {
        return stepOf(a.routes(), "drivers") == "extracted" &&
               stepOf(b.routes(), "drivers") == "extracted";
      },
      std::chrono::seconds(5)));
  const double end_to_end_ms =
      std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - cli_start)
          .count();
  EXPECT_EQ(upstreamOf(a.get("/api/drivers/1")), "driver-service");
  EXPECT_EQ(upstreamOf(b.get("/api/drivers/2")), "driver-service");
  EXPECT_EQ(a.routes()["config_source"]["mod_revision"],
            b.routes()["config_source"]["mod_revision"]);

  // Propagation alone: a write to etcd until both replicas serve it (best of 5).
  auto etcd = client();
  double best_ms = 1e9;
  double worst_ms = 0;
  double worst_after_commit_ms = 0;
  for (int i = 1; i <= 5; ++i) {
    auto current = etcd.get(std::string(kPrefix) + "/config");
    ASSERT_TRUE(current.ok() && current->first);
    json config = json::parse(current->first->value);
    config["routes"][1]["stage"] = "canary";
    config["routes"][1]["percent"] = i * 10;
    const std::string want = "canary " + std::to_string(i * 10);
    const auto start = std::chrono::steady_clock::now();
    ASSERT_TRUE(etcd.put(std::string(kPrefix) + "/config", config.dump()).ok());
    const auto committed = std::chrono::steady_clock::now();
    ASSERT_TRUE(eventually(
        [&] { return stepOf(a.routes(), "trips") == want && stepOf(b.routes(), "trips") == want; },
        std::chrono::seconds(5)));
    const double ms =
        std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
    best_ms = std::min(best_ms, ms);
    worst_ms = std::max(worst_ms, ms);
    worst_after_commit_ms = std::max(
        worst_after_commit_ms,
        std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - committed)
            .count());
  }
  strangler::testing::reportFigure("etcd_route_change_cli_to_all_replicas_ms", end_to_end_ms,
                                   "< 5000",
                                   "`strangler routes extract` start to 2 replicas serving");
  strangler::testing::reportFigure("etcd_propagation_best_ms", best_ms, "< 1000",
                                   "etcd write to 2 replicas serving, best of 5");
  strangler::testing::reportFigure("etcd_propagation_worst_ms", worst_ms, "< 1000",
                                   "etcd write to 2 replicas serving, worst of 5");
  strangler::testing::reportFigure("etcd_propagation_after_commit_worst_ms", worst_after_commit_ms,
                                   "< 500",
                                   "etcd write acknowledged to 2 replicas serving, worst of 5");
  EXPECT_LT(worst_ms, 1000);
}

TEST_F(EtcdReplicasTest, InvalidRevisionIsRefusedAndLastGoodKeepsServing) {
  json config = baseConfig();
  config["routes"][0]["stage"] = "extracted";
  push(config);
  ProxyReplica a(url_);
  ProxyReplica b(url_);
  ASSERT_TRUE(a.running() && b.running());

  auto etcd = client();
  json bad = config;
  bad["routes"][0]["stage"] = "sideways";
  auto written = etcd.put(std::string(kPrefix) + "/config", bad.dump());
  ASSERT_TRUE(written.ok());
  for (auto* replica : {&a, &b}) {
    ASSERT_TRUE(eventually(
        [&] {
          const auto routes = replica->routes();
          return routes.is_object() && routes["config_source"]["last_error"].is_string();
        },
        std::chrono::seconds(5)));
    const auto source = replica->routes()["config_source"];
    EXPECT_NE(source["last_error"].get<std::string>().find("routes[0].stage"), std::string::npos)
        << source.dump();
    EXPECT_EQ(source["rejected_revision"], *written);
    EXPECT_EQ(upstreamOf(replica->get("/api/drivers/1")), "driver-service");
    const auto metrics =
        strangler::testing::httpRequest("127.0.0.1", replica->adminPort(), "GET", "/metrics");
    EXPECT_NE(metrics.body.find("strangler_proxy_config_reloads_total{result=\"rejected\"} 1"),
              std::string::npos);
  }
  // The CLI refuses to edit an invalid document, and a push repairs it.
  EXPECT_EQ(cli({"routes", "reset", "drivers"}).exit_code, 1);
  push(baseConfig());
  ASSERT_TRUE(eventually(
      [&] {
        return stepOf(a.routes(), "drivers") == "monolith" &&
               stepOf(b.routes(), "drivers") == "monolith";
      },
      std::chrono::seconds(5)));
  EXPECT_TRUE(a.routes()["config_source"]["last_error"].is_null());
}

TEST_F(EtcdReplicasTest, KilledMemberStopsNeitherRoutingNorEdits) {
  push(baseConfig());
  ProxyReplica a(url_);
  ProxyReplica b(url_);
  ASSERT_TRUE(a.running() && b.running());

  cluster_->kill(0);  // the first member every client tries
  const auto edited = cli({"routes", "canary", "drivers", "--percent", "10"});
  ASSERT_EQ(edited.exit_code, 0) << edited.output;
  ASSERT_TRUE(eventually(
      [&] {
        return stepOf(a.routes(), "drivers") == "canary 10" &&
               stepOf(b.routes(), "drivers") == "canary 10";
      },
      std::chrono::seconds(8)));
  const auto answered = a.get("/api/trips/1");
  EXPECT_EQ(answered.status, 200);
  EXPECT_EQ(upstreamOf(answered), "monolith");
  const auto extracted = cli({"routes", "extract", "trips"});
  ASSERT_EQ(extracted.exit_code, 0) << extracted.output;
  ASSERT_TRUE(eventually([&] { return upstreamOf(b.get("/api/trips/1")) == "driver-service"; },
                         std::chrono::seconds(8)));
}

TEST_F(EtcdReplicasTest, WholeClusterDownKeepsServingAndRecovers) {
  json config = baseConfig();
  config["routes"][0]["stage"] = "extracted";
  push(config);
  ProxyReplica a(url_);
  ProxyReplica b(url_);
  ASSERT_TRUE(a.running() && b.running());

  for (int i = 0; i < cluster_->size(); ++i)
    cluster_->kill(i);
  ASSERT_TRUE(eventually([&] { return a.routes()["config_source"]["etcd_error"].is_string(); },
                         std::chrono::seconds(5)));
  for (int i = 0; i < 20; ++i) {
    auto* replica = i % 2 ? &a : &b;
    const auto answer = replica->get("/api/drivers/" + std::to_string(i));
    ASSERT_EQ(answer.status, 200);
    EXPECT_EQ(upstreamOf(answer), "driver-service");
  }
  EXPECT_EQ(cli({"routes", "reset", "drivers"}).exit_code, 1);  // nowhere to write

  for (int i = 0; i < cluster_->size(); ++i)
    cluster_->start(i);
  ASSERT_TRUE(cluster_->waitHealthy());
  const auto reset = cli({"routes", "reset", "drivers"});
  ASSERT_EQ(reset.exit_code, 0) << reset.output;
  ASSERT_TRUE(eventually(
      [&] {
        return upstreamOf(a.get("/api/drivers/1")) == "monolith" &&
               upstreamOf(b.get("/api/drivers/1")) == "monolith";
      },
      std::chrono::seconds(8)));
  EXPECT_TRUE(a.routes()["config_source"]["etcd_error"].is_null());
}

TEST_F(EtcdReplicasTest, ReplicasListThemselvesWithTheConfigTheyApplied) {
  push(baseConfig());
  ProxyReplica a(url_);
  auto b = std::make_unique<ProxyReplica>(url_);
  ASSERT_TRUE(a.running() && b->running());
  const auto replicasOf = [&](ProxyReplica& replica) {
    const auto answer =
        strangler::testing::httpRequest("127.0.0.1", replica.adminPort(), "GET", "/replicas");
    return answer.status == 200 ? json::parse(answer.body)["replicas"] : json(nullptr);
  };
  ASSERT_TRUE(eventually([&] { return replicasOf(a).size() == 2; }, std::chrono::seconds(5)));
  std::set<std::string> admins;
  for (const auto& r : replicasOf(a))
    admins.insert(r["admin"].get<std::string>());
  EXPECT_EQ(admins, (std::set<std::string>{"127.0.0.1:" + std::to_string(a.adminPort()),
                                           "127.0.0.1:" + std::to_string(b->adminPort())}));

  const auto edited = cli({"routes", "shadow", "drivers"});
  ASSERT_EQ(edited.exit_code, 0) << edited.output;
  auto current = client().get(std::string(kPrefix) + "/config");
  ASSERT_TRUE(current.ok() && current->first);
  const int64_t revision = current->first->mod_revision;
  ASSERT_TRUE(eventually(
      [&] {
        const auto replicas = replicasOf(*b);
        if (replicas.size() != 2) return false;
        for (const auto& r : replicas) {
          if (r["config_revision"] != revision) return false;
        }
        return true;
      },
      std::chrono::seconds(5)));

  const auto status = cli({"status", "--json"});
  ASSERT_EQ(status.exit_code, 0) << status.output;
  const json report = json::parse(status.output);
  EXPECT_EQ(report["config_revision"], revision);
  ASSERT_EQ(report["replicas"].size(), 2u);
  for (const auto& r : report["replicas"])
    EXPECT_TRUE(r["in_sync"].get<bool>()) << r.dump();
  EXPECT_TRUE(report["proxy"].is_object());  // the live figures of a registered replica
  const auto table = cli({"status"});
  EXPECT_NE(table.output.find("in sync"), std::string::npos) << table.output;

  b.reset();  // a graceful stop deregisters at once
  ASSERT_TRUE(eventually([&] { return replicasOf(a).size() == 1; }, std::chrono::seconds(3)));
}

TEST_F(EtcdReplicasTest, ConcurrentEditsAreNeitherLostNorDuplicated) {
  push(baseConfig());
  constexpr int kEdits = 10;
  std::atomic<int> failures{0};
  const auto operator_run = [&](const std::string& route) {
    for (int i = 1; i <= kEdits; ++i) {
      const auto done = cli({"routes", "canary", route, "--percent", std::to_string(i)});
      if (done.exit_code != 0) {
        ++failures;
        std::cerr << done.output;
      }
    }
  };
  std::thread first(operator_run, "drivers");
  std::thread second(operator_run, "trips");
  first.join();
  second.join();
  EXPECT_EQ(failures.load(), 0);

  auto etcd = client();
  auto current = etcd.get(std::string(kPrefix) + "/config");
  ASSERT_TRUE(current.ok() && current->first);
  const json config = json::parse(current->first->value);
  EXPECT_EQ(config["routes"][0]["percent"], kEdits);
  EXPECT_EQ(config["routes"][1]["percent"], kEdits);

  auto journal = etcd.getPrefix(std::string(kPrefix) + "/journal/");
  ASSERT_TRUE(journal.ok());
  ASSERT_EQ(journal->kvs.size(), 1u + 2 * kEdits);  // the push and every edit, once
  std::map<std::string, std::vector<int>> percents;
  for (size_t i = 0; i < journal->kvs.size(); ++i) {
    char expected_key[64];
    std::snprintf(expected_key, sizeof expected_key, "%s/journal/%012zu", kPrefix, i + 1);
    EXPECT_EQ(journal->kvs[i].key, expected_key);
    const json line = json::parse(journal->kvs[i].value);
    if (line["action"] == "canary")
      percents[line["route"].get<std::string>()].push_back(line["to"]["percent"].get<int>());
  }
  for (const std::string route : {"drivers", "trips"}) {
    std::vector<int> expected;
    for (int i = 1; i <= kEdits; ++i)
      expected.push_back(i);
    EXPECT_EQ(percents[route], expected) << route;
  }
}

// A deployment's seed (`config push --if-absent`, run again on every apply) stores the config
// once and never overwrites the edits made since.
TEST_F(EtcdReplicasTest, SeedPushNeverOverwritesLiveEdits) {
  const std::string file = dir_.file("seed.json");
  std::ofstream(file) << baseConfig().dump(2);
  const auto first = cli({"config", "push", "--if-absent", file});
  ASSERT_EQ(first.exit_code, 0) << first.output;
  EXPECT_NE(first.output.find("pushed"), std::string::npos) << first.output;
  const auto edited = cli({"routes", "shadow", "drivers"});
  ASSERT_EQ(edited.exit_code, 0) << edited.output;
  const auto again = cli({"config", "push", "--if-absent", file});
  ASSERT_EQ(again.exit_code, 0) << again.output;
  EXPECT_NE(again.output.find("kept the config already"), std::string::npos) << again.output;
  auto stored = client().get(std::string(kPrefix) + "/config");
  ASSERT_TRUE(stored.ok() && stored->first);
  EXPECT_EQ(json::parse(stored->first->value)["routes"][0]["stage"], "shadow");
}

}  // namespace
}  // namespace strangler::etcd::testing
