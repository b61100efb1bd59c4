// `strangler routes advance` against a real proxy's live figures, the proxy's own canary
// rollback, and `routes extract --with-data` flipping a real sync with the route.
#include <gtest/gtest.h>

#include <chrono>
#include <fstream>
#include <sstream>
#include <thread>

#include <nlohmann/json.hpp>

#include "journal.h"
#include "proxy_harness.h"
#include "strangler/testing/process.h"
#include "strangler/testing/temp_dir.h"

namespace strangler::cli {
namespace {

using nlohmann::json;
using proxy::testing::FakeUpstream;
using proxy::testing::ProxyProcess;
using strangler::testing::runCommand;
using Clock = std::chrono::steady_clock;

const strangler::testing::ChildProcess::Env kToken = {{"STRANGLER_TEST_ADMIN_TOKEN", "t0ken"}};

using strangler::testing::readFile;

json routeIn(const std::string& config, const std::string& name) {
  const json doc = json::parse(readFile(config));
  for (const auto& r : doc["routes"])
    if (r["name"] == name) return r;
  return nullptr;
}

class AdvanceTest : public ::testing::Test {
 protected:
  FakeUpstream monolith_{"monolith"};
  FakeUpstream service_{"service"};

  void SetUp() override {
    const auto same = [](const proxy::testing::ReceivedRequest&) {
      return json{{"id", 7}, {"name", "Ann"}};
    };
    monolith_.setResponder(same);
    service_.setResponder(same);
  }

  json config(const json& route_extra) {
    json config = proxy::testing::baseConfig(monolith_);
    proxy::testing::addUpstream(config, service_);
    json route = {{"name", "drivers"},
                  {"match", {{"path", "/api/drivers/**"}}},
                  {"target", "service"},
                  {"stage", "monolith"}};
    route.update(route_extra);
    config["routes"] = json::array({route});
    return config;
  }

  strangler::testing::CommandResult cli(ProxyProcess& proxy, std::vector<std::string> args) {
    const std::vector<std::string> global = {
        "--config", proxy.configPath(), "--admin",
        "http://127.0.0.1:" + std::to_string(proxy.adminPort())};
    args.insert(args.begin(), global.begin(), global.end());
    return runCommand(STRANGLER_CLI_BIN, args, std::chrono::seconds(30), kToken);
  }

  static void traffic(ProxyProcess& proxy, int requests) {
    for (int i = 0; i < requests; ++i)
      proxy.get("/api/drivers/7");
  }

  static void waitCompared(ProxyProcess& proxy, uint64_t n) {
    const auto deadline = Clock::now() + std::chrono::seconds(10);
    while (Clock::now() < deadline) {
      const auto diffs = proxy.admin("GET", "/diffs?route=drivers");
      if (diffs.status == 200 && diffs.json()["counters"]["compared"].get<uint64_t>() >= n) return;
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
  }
};

TEST_F(AdvanceTest, MovesAlongThePlanOnlyWhenTheLiveFiguresPassTheGates) {
  ProxyProcess proxy(
      config({{"plan", {"shadow", 50, "extracted"}},
              {"gates",
               {{"min_samples", 20}, {"max_latency_ratio", 20.0}, {"auto_rollback", false}}}}),
      kToken);
  ASSERT_TRUE(proxy.running());

  // Leaving the monolith needs no figures.
  auto step = cli(proxy, {"routes", "advance", "drivers"});
  ASSERT_EQ(step.exit_code, 0) << step.output;
  EXPECT_EQ(routeIn(proxy.configPath(), "drivers")["stage"], "shadow");

  // In shadow with no comparisons yet: refused, with the figures, and the file untouched.
  const std::string before = readFile(proxy.configPath());
  step = cli(proxy, {"routes", "advance", "drivers"});
  EXPECT_EQ(step.exit_code, 1);
  EXPECT_NE(step.output.find("samples (comparisons)"), std::string::npos) << step.output;
  EXPECT_NE(step.output.find("FAILED"), std::string::npos) << step.output;
  EXPECT_EQ(readFile(proxy.configPath()), before);

  // Enough agreeing comparisons: on to canary 50.
  traffic(proxy, 25);
  waitCompared(proxy, 25);
  step = cli(proxy, {"routes", "advance", "drivers", "--json"});
  ASSERT_EQ(step.exit_code, 0) << step.output;
  const json report = json::parse(step.output.substr(0, step.output.find('\n')));
  EXPECT_TRUE(report["passed"]);
  EXPECT_EQ(report["to"], "canary 50");
  EXPECT_EQ(routeIn(proxy.configPath(), "drivers")["percent"], 50);

  // The canary's target fails: refused on the error rate.
  service_.status = 500;
  traffic(proxy, 60);
  step = cli(proxy, {"routes", "advance", "drivers"});
  EXPECT_EQ(step.exit_code, 1);
  EXPECT_NE(step.output.find("target error rate"), std::string::npos) << step.output;
  EXPECT_EQ(routeIn(proxy.configPath(), "drivers")["stage"], "canary");

  // --force goes past the gates, and the journal says so.
  step = cli(proxy, {"routes", "advance", "drivers", "--force"});
  ASSERT_EQ(step.exit_code, 0) << step.output;
  EXPECT_EQ(routeIn(proxy.configPath(), "drivers")["stage"], "extracted");
  const auto journal = journalOf(proxy.configPath());
  ASSERT_EQ(journal.size(), 3u);
  EXPECT_EQ(journal[1]["action"], "advance");
  EXPECT_TRUE(journal[1]["gates"].is_array());
  EXPECT_EQ(journal[2]["forced"], true);

  // At the end of the plan there is nowhere to go.
  step = cli(proxy, {"routes", "advance", "drivers"});
  EXPECT_EQ(step.exit_code, 1);
  EXPECT_EQ(journalOf(proxy.configPath()).size(), 3u);
}

TEST_F(AdvanceTest, RefusesToJudgeOnASampleTheLoadChose) {
  // A rate budget drops most copies: the comparisons left all agree, but they are a sample
  // nobody chose, so the gate refuses to judge on them.
  ProxyProcess proxy(config({{"stage", "shadow"},
                             {"shadow", {{"max_rate", 5}}},
                             {"gates", {{"min_samples", 5}, {"auto_rollback", false}}}}),
                     kToken);
  ASSERT_TRUE(proxy.running());
  traffic(proxy, 60);
  waitCompared(proxy, 5);
  const auto diffs = proxy.admin("GET", "/diffs?route=drivers").json()["counters"];
  ASSERT_GT(diffs["dropped_by"]["max_rate"].get<uint64_t>(), 0u) << diffs.dump();
  EXPECT_EQ(diffs["mismatched"], 0) << diffs.dump();
  auto step = cli(proxy, {"routes", "advance", "drivers", "--json"});
  EXPECT_EQ(step.exit_code, 1) << step.output;
  const json report = json::parse(step.output.substr(0, step.output.find('\n')));
  EXPECT_FALSE(report["passed"]);
  bool share_failed = false;
  for (const auto& gate : report["gates"]) {
    if (gate["gate"] == "compared share") {
      share_failed = !gate["passed"].get<bool>();
    } else {
      EXPECT_TRUE(gate["passed"]) << gate.dump();
    }
  }
  EXPECT_TRUE(share_failed) << step.output;
  EXPECT_EQ(routeIn(proxy.configPath(), "drivers")["stage"], "shadow");
}

TEST_F(AdvanceTest, RefusesWhenTheProxyServesAnotherStepThanTheFile) {
  ProxyProcess proxy(config({{"stage", "shadow"}}), kToken);
  ASSERT_TRUE(proxy.running());
  // Edited without --admin: the proxy still serves shadow.
  auto edit =
      runCommand(STRANGLER_CLI_BIN,
                 {"--config", proxy.configPath(), "routes", "canary", "drivers", "--percent", "10"},
                 std::chrono::seconds(30));
  ASSERT_EQ(edit.exit_code, 0) << edit.output;
  const std::string before = readFile(proxy.configPath());
  const auto step = cli(proxy, {"routes", "advance", "drivers"});
  EXPECT_EQ(step.exit_code, 1);  // "the proxy serves shadow but the file says canary 10"
  EXPECT_EQ(readFile(proxy.configPath()), before);
}

TEST_F(AdvanceTest, TheProxyRollsAFailingCanaryBackAndJournalsIt) {
  service_.status = 500;
  ProxyProcess proxy(config({{"stage", "canary"},
                             {"percent", 50},
                             {"plan", {"shadow", 10, 50, "extracted"}},
                             {"gates", {{"min_samples", 10}, {"max_error_rate", 0.05}}}}),
                     kToken);
  ASSERT_TRUE(proxy.running());
  const auto deadline = Clock::now() + std::chrono::seconds(15);
  while (Clock::now() < deadline && routeIn(proxy.configPath(), "drivers")["percent"] != 10) {
    for (int i = 0; i < 10; ++i)
      proxy.get("/api/drivers/7");
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  const json route = routeIn(proxy.configPath(), "drivers");
  EXPECT_EQ(route["stage"], "canary");
  EXPECT_EQ(route["percent"], 10);
  const auto journal = journalOf(proxy.configPath());
  ASSERT_FALSE(journal.empty());
  EXPECT_EQ(journal.back()["action"], "rollback");
  EXPECT_EQ(journal.back()["who"], "strangler-proxy");
  EXPECT_EQ(journal.back()["automatic"], true);
  EXPECT_NE(journal.back()["reason"].get<std::string>().find("error rate"), std::string::npos);
  EXPECT_EQ(journal.back()["from"]["percent"], 50);
  // The proxy serves the new step too.
  const json live = proxy.admin("GET", "/routes").json();
  EXPECT_EQ(live["routes"][0]["percent"], 10);
}

// The fenced cutover (extract --with-data, rollback) is tested end to end in cutover_test.cpp.

}  // namespace
}  // namespace strangler::cli
