// Replicas that decide as one: `routes advance` and the guard judge every replica's figures
// summed, and one decider (an etcd lease) acts for all.
#include <gtest/gtest.h>

#include <unistd.h>

#include <chrono>
#include <thread>

#include <nlohmann/json.hpp>

#include "etcd_cluster.h"
#include "replicas_fixture.h"

namespace strangler::etcd::testing {
namespace {

using nlohmann::json;

class EtcdDeciderTest : public EtcdReplicasTest {
 protected:
  // "drivers" in canary 50 % with gates; auto_rollback as asked.
  json canaryConfig(bool auto_rollback) {
    json config = baseConfig();
    auto& drivers = config["routes"][0];
    drivers["stage"] = "canary";
    drivers["percent"] = 50;
    drivers["gates"] = {{"min_samples", 10},
                        {"max_error_rate", 0.05},
                        {"max_latency_ratio", 50.0},
                        {"auto_rollback", auto_rollback}};
    return config;
  }

  static json routeOf(const json& routes, const std::string& name) {
    for (const auto& r : routes.value("routes", json::array()))
      if (r.value("name", "") == name) return r;
    return nullptr;
  }

  static json adminGet(ProxyReplica& replica, const std::string& path) {
    try {
      const auto answer = strangler::testing::httpRequest("127.0.0.1", replica.adminPort(), "GET",
                                                          path, "", {}, std::chrono::seconds(5));
      return json::parse(answer.body, nullptr, false);
    } catch (const std::exception&) {
      return nullptr;
    }
  }

  // Sends requests through `replica` until it alone has sent `count` to the target.
  static bool sendUntilTarget(ProxyReplica& replica, int count) {
    for (int i = 0; i < 400; ++i) {
      const json route = routeOf(adminGet(replica, "/routes?scope=self"), "drivers");
      if (route.is_object() && route["sides"]["target"]["requests"].get<int>() >= count)
        return true;
      replica.get("/api/drivers/" + std::to_string(i));
    }
    return false;
  }

  static int sendMany(ProxyReplica& replica, int count) {
    int answered = 0;
    for (int i = 0; i < count; ++i)
      if (replica.get("/api/drivers/" + std::to_string(i)).status > 0) ++answered;
    return answered;
  }
};

// Errors seen only through replica B stop an advance asked of replica A; A's figures alone
// would have passed. Each replica's own figures are shown beside the sum.
TEST_F(EtcdDeciderTest, AdvanceIsRefusedByAnotherReplicasErrors) {
  push(canaryConfig(false));
  ProxyReplica a(url_);
  ProxyReplica b(url_);
  ASSERT_TRUE(a.running() && b.running());
  ASSERT_TRUE(eventually([&] { return stepOf(b.routes(), "drivers") == "canary 50"; },
                         std::chrono::seconds(10)));
  ASSERT_EQ(sendMany(a, 60), 60);  // the target answers well through A
  service_.status = 500;
  ASSERT_EQ(sendMany(b, 60), 60);  // and fails through B
  service_.status = 200;

  const json alone = routeOf(adminGet(a, "/routes?scope=self"), "drivers");
  ASSERT_TRUE(alone.is_object());
  EXPECT_GE(alone["sides"]["target"]["requests"].get<int>(), 10);
  EXPECT_EQ(alone["sides"]["target"]["errors_5xx"].get<int>(), 0);
  const json routes = adminGet(a, "/routes");
  const json summed = routeOf(routes, "drivers");
  ASSERT_TRUE(summed.is_object());
  EXPECT_GT(summed["sides"]["target"]["errors_5xx"].get<int>(), 0);
  EXPECT_EQ(summed["replicas"]["counted"].size(), 2u) << summed["replicas"].dump();
  EXPECT_EQ(summed["sides"]["target"]["requests"].get<int>() +
                summed["sides"]["monolith"]["requests"].get<int>(),
            120);
  ASSERT_TRUE(routes["replicas"].is_array());
  EXPECT_EQ(routes["replicas"].size(), 2u);

  const auto refused = cli({"routes", "advance", "drivers", "--admin",
                            "http://127.0.0.1:" + std::to_string(a.adminPort())});
  EXPECT_NE(refused.exit_code, 0) << refused.output;
  EXPECT_NE(refused.output.find("target error rate"), std::string::npos) << refused.output;
  EXPECT_EQ(stepOf(a.routes(), "drivers"), "canary 50");
  const auto status = cli({"status"});
  EXPECT_EQ(status.exit_code, 0) << status.output;
  EXPECT_NE(status.output.find("summed over the 2 replicas"), std::string::npos) << status.output;
  EXPECT_NE(status.output.find("each replica alone"), std::string::npos) << status.output;
  EXPECT_NE(status.output.find("(decider)"), std::string::npos) << status.output;
  // The dashboard, rendered by headless Chromium, lists both replicas.
  if (::access("/usr/bin/chromium", X_OK) == 0) {
    strangler::testing::TempDir profile("strangler-chromium");
    const auto page = strangler::testing::runCommand(
        "/usr/bin/chromium",
        {"--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--user-data-dir=" + profile.path().string(), "--virtual-time-budget=4000", "--dump-dom",
         "http://127.0.0.1:" + std::to_string(a.adminPort()) + "/"},
        std::chrono::seconds(60));
    const json self_b = adminGet(b, "/replicas")["self"];
    EXPECT_NE(page.output.find("data-replica=\"" + self_b.value("id", "?") + "\""),
              std::string::npos)
        << "replica B is not on A's dashboard";
    EXPECT_NE(page.output.find("(decider)"), std::string::npos);
  }

  // A replica that does not answer leaves the sum incomplete: no advance on it either.
  service_.status = 200;
  b.process().signal(SIGSTOP);
  const auto incomplete = cli({"routes", "advance", "drivers", "--admin",
                               "http://127.0.0.1:" + std::to_string(a.adminPort())});
  b.process().signal(SIGCONT);
  EXPECT_NE(incomplete.exit_code, 0) << incomplete.output;
  EXPECT_NE(incomplete.output.find("replicas counted"), std::string::npos) << incomplete.output;
}

// Both replicas see the target fail; one decider rolls the canary back, once, judging the
// figures of both; when the decider dies the other replica takes the role.
TEST_F(EtcdDeciderTest, TwoGuardsRollBackOnceAndTheRolePassesOn) {
  push(canaryConfig(true));
  auto a = std::make_unique<ProxyReplica>(url_);
  auto b = std::make_unique<ProxyReplica>(url_);
  ASSERT_TRUE(a->running() && b->running());
  std::string decider;
  ASSERT_TRUE(eventually(
      [&] {
        const json replicas = adminGet(*a, "/replicas");
        decider = replicas.is_object() && replicas["decider"].is_string()
                      ? replicas["decider"].get<std::string>()
                      : "";
        return !decider.empty();
      },
      std::chrono::seconds(10)));
  service_.status = 500;
  // Six failures through each replica: neither alone reaches the 10 samples the gate needs.
  ASSERT_TRUE(sendUntilTarget(*a, 6));
  ASSERT_TRUE(sendUntilTarget(*b, 6));
  ASSERT_TRUE(eventually([&] { return stepOf(a->routes(), "drivers") != "canary 50"; },
                         std::chrono::seconds(15)))
      << "no rollback";
  std::this_thread::sleep_for(std::chrono::seconds(1));  // a second guard would act by now
  EXPECT_EQ(stepOf(a->routes(), "drivers"), stepOf(b->routes(), "drivers"));

  auto journal = client().getPrefix(std::string(kPrefix) + "/journal/");
  ASSERT_TRUE(journal.ok());
  int rollbacks = 0;
  std::string reason;
  for (const auto& kv : journal->kvs) {
    const json line = json::parse(kv.value);
    if (line.value("action", "") == "rollback") {
      ++rollbacks;
      reason = line.value("reason", "");
    }
  }
  EXPECT_EQ(rollbacks, 1);
  EXPECT_NE(reason.find("(2 replicas)"), std::string::npos) << reason;

  // The decider dies without a goodbye: the survivor takes the role once its lease ends.
  const json self_a = adminGet(*a, "/replicas")["self"];
  auto& dying = self_a.value("id", "") == decider ? a : b;
  auto& survivor = self_a.value("id", "") == decider ? b : a;
  const std::string survivor_id = adminGet(*survivor, "/replicas")["self"].value("id", "");
  dying->process().signal(SIGKILL);
  EXPECT_TRUE(eventually(
      [&] {
        const json replicas = adminGet(*survivor, "/replicas");
        return replicas.is_object() && replicas["decider"] == survivor_id;
      },
      std::chrono::seconds(15)));
}

// A replica given one member, which then stops (SIGSTOP: its connections stay open and silent):
// the replica keeps serving, notices the silence through its own lease renewals, moves its watch
// to a member it learnt from the cluster and applies the edit made meanwhile; the member's return
// changes nothing.
TEST_F(EtcdDeciderTest, ReplicaCutOffFromItsMemberKeepsServingAndCatchesUp) {
  push(baseConfig());
  ProxyReplica cut("etcd://" + cluster_->endpoint(0) + kPrefix);
  ASSERT_TRUE(cut.running());
  ASSERT_EQ(stepOf(cut.routes(), "drivers"), "monolith");
  std::this_thread::sleep_for(std::chrono::milliseconds(500));  // it has read the member list
  cluster_->pause(0);
  const std::string others =
      "etcd://" + cluster_->endpoint(1) + "," + cluster_->endpoint(2) + kPrefix;
  const auto edited = strangler::testing::runCommand(
      STRANGLER_CLI_BIN, {"--config", others, "routes", "shadow", "drivers"},
      std::chrono::seconds(30), {{"STRANGLER_USER", "tester"}});
  ASSERT_EQ(edited.exit_code, 0) << edited.output;
  EXPECT_EQ(cut.get("/api/drivers/1").status, 200);  // serving all along
  const bool caught_up = eventually([&] { return stepOf(cut.routes(), "drivers") == "shadow"; },
                                    std::chrono::seconds(15));
  cluster_->resume(0);
  EXPECT_TRUE(caught_up) << "the replica stayed on its stopped member's silent watch";
  EXPECT_EQ(cut.get("/api/drivers/1").status, 200);
  const auto back = strangler::testing::runCommand(
      STRANGLER_CLI_BIN, {"--config", others, "routes", "reset", "drivers"},
      std::chrono::seconds(30), {{"STRANGLER_USER", "tester"}});
  ASSERT_EQ(back.exit_code, 0) << back.output;
  EXPECT_TRUE(eventually([&] { return stepOf(cut.routes(), "drivers") == "monolith"; },
                         std::chrono::seconds(10)));
}

// A replica's lease ends behind its back (revoked here: what an etcd outage longer than the TTL
// leaves): its registration and the decider role go with it; it registers again under a new
// lease and takes the role back.
TEST_F(EtcdDeciderTest, ALostLeaseIsReplacedAndTheRoleTakenBack) {
  push(baseConfig());
  ProxyReplica replica(url_);
  ASSERT_TRUE(replica.running());
  auto etcd = client();
  const std::string registry = std::string(kPrefix) + "/replicas/";
  const std::string decider_key = std::string(kPrefix) + "/decider";
  int64_t lease = 0;
  ASSERT_TRUE(eventually(
      [&] {
        auto decider = etcd.get(decider_key);
        lease = decider.ok() && decider->first ? decider->first->lease : 0;
        return lease != 0;
      },
      std::chrono::seconds(10)));
  ASSERT_TRUE(etcd.revokeLease(lease).ok());
  auto gone = etcd.getPrefix(registry);
  ASSERT_TRUE(gone.ok());
  EXPECT_TRUE(gone->kvs.empty());
  EXPECT_TRUE(eventually(
      [&] {
        auto entries = etcd.getPrefix(registry);
        auto decider = etcd.get(decider_key);
        return entries.ok() && entries->kvs.size() == 1 && entries->kvs[0].lease != lease &&
               decider.ok() && decider->first && decider->first->lease == entries->kvs[0].lease;
      },
      std::chrono::seconds(10)))
      << "no new registration or no decider under the new lease";
  const json replicas = adminGet(replica, "/replicas");
  EXPECT_EQ(replicas["decider"], replicas["self"]["id"]) << replicas.dump();
  EXPECT_EQ(replica.get("/api/drivers/1").status, 200);
}

}  // namespace
}  // namespace strangler::etcd::testing
