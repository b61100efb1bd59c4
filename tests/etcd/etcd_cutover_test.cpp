// The fenced cutover with two proxy replicas sharing their config in a real 3-member etcd
// cluster: the command finds both replicas under the prefix, holds the route's writes on each,
// and switches both, while clients write through both replicas the whole time.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include <fstream>
#include <thread>

#include "etcd_cluster.h"
#include "strangler/testing/counter_writers.h"
#include "strangler/testing/sync_cli.h"

namespace strangler::etcd::testing {
namespace {

using nlohmann::json;
using strangler::testing::ChildProcess;
using strangler::testing::CounterWriters;
using strangler::testing::httpRequest;
using strangler::testing::runCommand;

constexpr int kSeed = 100;  // drivers 101..200

uint16_t listeningPort(ChildProcess& process) {
  const auto line = process.waitForLine("listening on http://", std::chrono::seconds(30));
  if (!line) throw std::runtime_error("did not start: " + process.output());
  return static_cast<uint16_t>(std::stoi(line->substr(line->rfind(':') + 1)));
}

std::string stepOf(const json& routes) {
  if (!routes.is_object()) return "(no answer)";
  for (const auto& r : routes.value("routes", json::array()))
    if (r.value("name", "") == "drivers") return r.value("stage", "");
  return "(no route)";
}

TEST(EtcdCutoverTest, EveryReplicaIsFencedAndSwitched) {
  STRANGLER_NEED_ETCD();
  EtcdCluster cluster(3);
  ASSERT_TRUE(cluster.waitHealthy());
  const std::string url = cluster.url("/strangler/cutover");
  strangler::testing::TempDir dir("strangler-etcd-cutover");
  const std::string monolith_db = "sqlite3://db=" + dir.file("monolith.db");
  const std::string service_db = "sqlite3://db=" + dir.file("drivers.db");
  auto monolith = ChildProcess::start(
      STRANGLER_MONOLITH_BIN,
      {"--listen", "127.0.0.1:0", "--db", monolith_db, "--seed", std::to_string(kSeed)});
  const auto monolith_port = listeningPort(*monolith);
  const std::vector<std::string> dbs{"--from", monolith_db, "--to", service_db};
  auto sync_args = [&](std::vector<std::string> args) {
    args.insert(args.begin(), "sync");
    args.insert(args.end(), dbs.begin(), dbs.end());
    return args;
  };
  ASSERT_EQ(runCommand(STRANGLER_CLI_BIN, sync_args({"run"}), std::chrono::seconds(60)).exit_code,
            0);
  auto watch = ChildProcess::start(STRANGLER_CLI_BIN,
                                   sync_args({"watch", "--status-listen", "127.0.0.1:0"}));
  ASSERT_TRUE(watch->waitForLine("sync status on", std::chrono::seconds(30)));
  auto service = ChildProcess::start(STRANGLER_DRIVER_SERVICE_BIN,
                                     {"--listen", "127.0.0.1:0", "--db", service_db, "--monolith",
                                      "http://127.0.0.1:" + std::to_string(monolith_port)});
  const auto service_port = listeningPort(*service);

  setenv("ETCD_CUTOVER_TOKEN", "etcd-cutover-secret", 1);
  const json config = strangler::testing::driversDataRouteConfig(
      monolith_port, service_port, "ETCD_CUTOVER_TOKEN", {{"stage", "canary"}, {"percent", 50}});
  const std::string file = dir.file("push.json");
  std::ofstream(file) << config.dump(2);
  const auto cli = [&](std::vector<std::string> args) {
    args.insert(args.begin(), {"--config", url});
    return runCommand(STRANGLER_CLI_BIN, args, std::chrono::seconds(60));
  };
  ASSERT_EQ(cli({"config", "push", file}).exit_code, 0);
  ProxyReplica a(url);
  ProxyReplica b(url);
  ASSERT_TRUE(a.running() && b.running());
  // Both replicas registered (the cutover finds them there).
  ASSERT_TRUE(eventually(
      [&] {
        auto status = cli({"status", "--json"});
        const auto doc = json::parse(status.output.substr(status.output.find('{')), nullptr, false);
        return doc.is_object() && doc["replicas"].is_array() && doc["replicas"].size() == 2;
      },
      std::chrono::seconds(10)));
  strangler::testing::waitForSync(STRANGLER_CLI_BIN, monolith_db, service_db,
                                  strangler::testing::watchHoldsLease);

  CounterWriters writers({a.port(), b.port()}, kSeed + 1, 2 * kSeed, 4);
  writers.start();
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  std::vector<std::string> extract{"routes", "extract", "drivers", "--with-data", "--json"};
  extract.insert(extract.end(), dbs.begin(), dbs.end());
  for (int round = 0; round < 2; ++round) {
    auto moved = cli(extract);
    ASSERT_EQ(moved.exit_code, 0) << moved.output;
    const auto report = json::parse(moved.output.substr(moved.output.find('{')));
    EXPECT_EQ(report["replicas"], 2);
    EXPECT_GE(report["write_pause_ms"].get<int64_t>(), 0);  // reported (the goal is a benchmark's)
    EXPECT_EQ(stepOf(a.routes()), "extracted");
    EXPECT_EQ(stepOf(b.routes()), "extracted");
    std::this_thread::sleep_for(std::chrono::milliseconds(300));
    auto back = cli({"routes", "rollback", "drivers", "--json"});
    ASSERT_EQ(back.exit_code, 0) << back.output;
    EXPECT_EQ(stepOf(a.routes()), "canary");
    EXPECT_EQ(stepOf(b.routes()), "canary");
    std::this_thread::sleep_for(std::chrono::milliseconds(300));
  }
  writers.stop();
  EXPECT_GT(writers.sent(), 100);
  EXPECT_EQ(writers.failed(), 0) << writers.lastFailure();
  strangler::testing::waitForSync(STRANGLER_CLI_BIN, monolith_db, service_db,
                                  strangler::testing::caughtUp);
  EXPECT_EQ(
      runCommand(STRANGLER_CLI_BIN, sync_args({"verify"}), std::chrono::seconds(60)).exit_code, 0);
  for (const auto& [id, counter] : writers.acknowledged()) {
    const auto served =
        httpRequest("127.0.0.1", a.port(), "GET", "/api/drivers/" + std::to_string(id));
    ASSERT_EQ(served.status, 200);
    EXPECT_NEAR(served.json()["location"]["lat"].get<double>(),
                37.0 + static_cast<double>(counter) * 1e-5, 1e-7)
        << "driver " << id;
  }
}

}  // namespace
}  // namespace strangler::etcd::testing
