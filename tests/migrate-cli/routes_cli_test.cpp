// The real `strangler` binary editing a real config file (and a real proxy with --admin).
#include <gtest/gtest.h>

#include <fstream>
#include <nlohmann/json.hpp>
#include <regex>
#include <sstream>
#include <thread>

#include "journal.h"
#include "strangler/testing/http_client.h"
#include "strangler/testing/process.h"
#include "strangler/testing/temp_dir.h"

namespace strangler::cli {
namespace {

using nlohmann::json;
using strangler::testing::runCommand;

using strangler::testing::readFile;

class RoutesCliTest : public ::testing::Test {
 protected:
  void SetUp() override {
    config_ = dir_.file("strangler.json");
    std::ofstream(config_) << R"({
  "listen": "127.0.0.1:0",
  "admin": { "listen": "127.0.0.1:0", "token_env": "STRANGLER_TEST_ADMIN_TOKEN" },
  "debug_headers": true,
  "upstreams": {
    "monolith": { "endpoints": ["127.0.0.1:9"], "timeout_ms": 500 },
    "driver-service": { "endpoints": ["127.0.0.1:9"], "timeout_ms": 500 }
  },
  "default_upstream": "monolith",
  "routes": [
    { "name": "trips", "match": { "path": "/api/trips/**" }, "stage": "monolith" }
  ]
})";
  }
  strangler::testing::CommandResult cli(std::vector<std::string> args) {
    args.insert(args.begin(), {"--config", config_});
    return runCommand(STRANGLER_CLI_BIN, args, std::chrono::seconds(30));
  }
  json routeNamed(const std::string& name) {
    const json config = json::parse(readFile(config_));
    for (const auto& r : config["routes"])
      if (r["name"] == name) return r;
    return nullptr;
  }

  strangler::testing::TempDir dir_;
  std::string config_;
};

TEST_F(RoutesCliTest, WalksTheStagesJournalsThemAndRollsBackStepByStep) {
  ASSERT_EQ(cli({"routes", "add", "drivers", "--path", "/api/drivers/**", "--methods", "GET,PUT",
                 "--target", "driver-service"})
                .exit_code,
            0);
  EXPECT_EQ(cli({"routes", "shadow", "drivers"}).exit_code, 0);
  EXPECT_EQ(cli({"routes", "canary", "drivers", "--percent", "10"}).exit_code, 0);
  EXPECT_EQ(cli({"routes", "canary", "drivers", "--percent", "50"}).exit_code, 0);
  EXPECT_EQ(cli({"routes", "extract", "drivers"}).exit_code, 0);
  EXPECT_EQ(routeNamed("drivers")["stage"], "extracted");
  EXPECT_FALSE(routeNamed("drivers").contains("percent"));

  auto journal = journalOf(config_);
  ASSERT_EQ(journal.size(), 5u);
  EXPECT_EQ(journal[3]["from"], (json{{"stage", "canary"}, {"percent", 10}}));
  EXPECT_EQ(journal[3]["to"], (json{{"stage", "canary"}, {"percent", 50}}));
  EXPECT_FALSE(journal[4]["who"].get<std::string>().empty());
  EXPECT_TRUE(std::regex_match(journal[4]["time"].get<std::string>(),
                               std::regex(R"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ)")));

  // Back one step at a time, per the journal.
  EXPECT_EQ(cli({"routes", "rollback", "drivers"}).exit_code, 0);
  EXPECT_EQ(routeNamed("drivers")["percent"], 50);
  EXPECT_EQ(cli({"routes", "rollback", "drivers"}).exit_code, 0);
  EXPECT_EQ(routeNamed("drivers")["percent"], 10);
  EXPECT_EQ(cli({"routes", "rollback", "drivers"}).exit_code, 0);
  EXPECT_EQ(routeNamed("drivers")["stage"], "shadow");
  EXPECT_EQ(cli({"routes", "canary", "drivers", "--percent", "25"}).exit_code, 0);
  EXPECT_EQ(cli({"routes", "rollback", "drivers"}).exit_code, 0);
  EXPECT_EQ(routeNamed("drivers")["stage"], "shadow");
  EXPECT_EQ(cli({"routes", "rollback", "drivers"}).exit_code, 0);
  EXPECT_EQ(routeNamed("drivers")["stage"], "monolith");
  auto nothing_left = cli({"routes", "rollback", "drivers"});
  EXPECT_EQ(nothing_left.exit_code, 1);
  EXPECT_EQ(cli({"routes", "extract", "drivers"}).exit_code, 0);
  EXPECT_EQ(cli({"routes", "reset", "drivers"}).exit_code, 0);
  EXPECT_EQ(routeNamed("drivers")["stage"], "monolith");
  // The untouched route and the key order of the file survive the edits.
  EXPECT_EQ(routeNamed("trips")["stage"], "monolith");
  EXPECT_LT(readFile(config_).find("\"listen\""), readFile(config_).find("\"routes\""));

  auto list = cli({"routes", "list", "--json"});
  ASSERT_EQ(list.exit_code, 0);
  EXPECT_EQ(json::parse(list.output).size(), 2u);
}

TEST_F(RoutesCliTest, RefusesIllegalMovesAndLeavesTheFileUntouched) {
  const std::string before = readFile(config_);
  const auto unknown = cli({"routes", "canary", "nope", "--percent", "10"});
  EXPECT_EQ(unknown.exit_code, 1);
  EXPECT_EQ(cli({"routes", "canary", "trips", "--percent", "10"}).exit_code, 1);  // no target
  EXPECT_EQ(cli({"routes", "canary", "trips", "--percent", "150"}).exit_code, 1);
  EXPECT_EQ(cli({"routes", "extract", "trips"}).exit_code, 1);
  EXPECT_EQ(cli({"routes", "add", "trips", "--path", "/x", "--target", "monolith"}).exit_code, 1);
  EXPECT_EQ(cli({"routes", "add", "bad", "--path", "/x", "--target", "nowhere"}).exit_code, 1);
  EXPECT_EQ(cli({"routes", "reset", "trips"}).exit_code, 1);   // already there
  EXPECT_EQ(cli({"routes", "canary", "trips"}).exit_code, 2);  // usage: --percent missing
  EXPECT_EQ(cli({"routes", "frobnicate"}).exit_code, 2);
  EXPECT_EQ(readFile(config_), before);
  EXPECT_EQ(readFile(config_ + ".journal.jsonl"), "");
}

TEST_F(RoutesCliTest, ConcurrentEditsNeitherCorruptTheFileNorLoseJournalLines) {
  std::vector<std::thread> runners;
  std::atomic<int> ok{0};
  for (int i = 0; i < 8; ++i) {
    runners.emplace_back([&, i] {
      const auto r = cli({"routes", "add", "r" + std::to_string(i), "--path",
                          "/api/r" + std::to_string(i) + "/**", "--target", "driver-service"});
      if (r.exit_code == 0) ++ok;
    });
  }
  for (auto& t : runners)
    t.join();
  EXPECT_EQ(ok.load(), 8);
  const auto config = json::parse(readFile(config_));
  EXPECT_EQ(config["routes"].size(), 9u);
  EXPECT_EQ(journalOf(config_).size(), 8u);
  EXPECT_EQ(cli({"config", "validate", config_}).exit_code, 0);
}

TEST_F(RoutesCliTest, OfflineRouteTestsReportFailingRows) {
  ASSERT_EQ(
      cli({"routes", "add", "drivers", "--path", "/api/drivers/**", "--target", "driver-service"})
          .exit_code,
      0);
  ASSERT_EQ(cli({"routes", "extract", "drivers"}).exit_code, 0);
  const std::string cases = dir_.file("cases.json");
  std::ofstream(cases) << R"({"cases": [
    {"method": "GET", "path": "/api/drivers/7", "expect": {"route": "drivers", "upstream": "driver-service"}},
    {"method": "GET", "path": "/api/drivers/../trips/1", "expect": {"route": "trips", "upstream": "monolith"}},
    {"method": "GET", "path": "/elsewhere", "expect": {"route": null, "upstream": "monolith"}},
    {"method": "GET", "path": "/api/../../etc/passwd", "expect": {"refused": true}}
  ]})";
  auto pass = cli({"routes", "test", cases, "--json"});
  EXPECT_EQ(pass.exit_code, 0) << pass.output;
  EXPECT_EQ(json::parse(pass.output)["failed"], 0);
  std::ofstream(cases) << R"({"cases": [
    {"method": "GET", "path": "/api/drivers/7", "expect": {"route": "drivers", "upstream": "monolith"}}
  ]})";
  auto fail = cli({"routes", "test", cases});
  EXPECT_EQ(fail.exit_code, 1);
  EXPECT_NE(fail.output.find("FAIL case 0"), std::string::npos) << fail.output;
}

TEST_F(RoutesCliTest, ValidateNamesTheKeyPath) {
  const std::string bad = dir_.file("bad.json");
  std::ofstream(bad)
      << R"({"upstreams": {"m": {"endpoints": ["127.0.0.1:1"]}}, "default_upstream": "m",
    "routes": [{"name": "x", "match": {"path": "/x"}, "target": "m", "stage": "canary", "percent": 150}]})";
  auto result = runCommand(STRANGLER_CLI_BIN, {"config", "validate", bad});
  EXPECT_EQ(result.exit_code, 1);
  auto good = runCommand(STRANGLER_CLI_BIN, {"config", "validate", config_});
  EXPECT_EQ(good.exit_code, 0) << good.output;
}

TEST_F(RoutesCliTest, EveryVerbHasHelpWithAnExample) {
  for (const auto& verb : std::vector<std::vector<std::string>>{{"routes", "list"},
                                                                {"routes", "add"},
                                                                {"routes", "shadow"},
                                                                {"routes", "canary"},
                                                                {"routes", "extract"},
                                                                {"routes", "advance"},
                                                                {"routes", "rollback"},
                                                                {"routes", "reset"},
                                                                {"routes", "test"},
                                                                {"status"},
                                                                {"config", "validate"},
                                                                {"config", "export"},
                                                                {"sync", "install"},
                                                                {"sync", "run"},
                                                                {"sync", "watch"},
                                                                {"sync", "verify"},
                                                                {"sync", "status"},
                                                                {"sync", "flip"},
                                                                {"demo"}}) {
    auto args = verb;
    args.push_back("--help");
    const auto help = runCommand(STRANGLER_CLI_BIN, args, std::chrono::seconds(10));
    const std::string name = verb.size() == 1 ? verb[0] : verb[0] + " " + verb[1];
    EXPECT_EQ(help.exit_code, 0) << name;
    EXPECT_NE(help.output.find("Example"), std::string::npos) << name << ":\n" << help.output;
  }
  // A usage error is exit code 2.
  EXPECT_EQ(cli({"routes", "canary", "drivers", "--percent"}).exit_code, 2);
  EXPECT_EQ(cli({"no-such-verb"}).exit_code, 2);
}

TEST_F(RoutesCliTest, AdminReloadReachesTheRunningProxy) {
  ASSERT_EQ(
      cli({"routes", "add", "drivers", "--path", "/api/drivers/**", "--target", "driver-service"})
          .exit_code,
      0);
  auto proxy = strangler::testing::ChildProcess::start(STRANGLER_PROXY_BIN,
                                                       {"--config", config_, "--workers", "1"},
                                                       {{"STRANGLER_TEST_ADMIN_TOKEN", "s3cret"}});
  const auto line = proxy->waitForLine("admin http://", std::chrono::seconds(20));
  ASSERT_TRUE(line) << proxy->output();
  std::smatch m;
  ASSERT_TRUE(std::regex_search(*line, m, std::regex(R"(admin http://127\.0\.0\.1:(\d+))")));
  const std::string admin = "http://127.0.0.1:" + m[1].str();

  auto without_token = cli({"--admin", admin, "routes", "shadow", "drivers"});
  EXPECT_EQ(without_token.exit_code, 1);  // written, but the proxy refused the reload
  auto with_token = runCommand(
      STRANGLER_CLI_BIN,
      {"--config", config_, "routes", "canary", "drivers", "--percent", "30", "--admin", admin},
      std::chrono::seconds(30), {{"STRANGLER_TEST_ADMIN_TOKEN", "s3cret"}});
  EXPECT_EQ(with_token.exit_code, 0) << with_token.output;
  const auto routes = strangler::testing::httpRequest(
      "127.0.0.1", static_cast<uint16_t>(std::stoi(m[1].str())), "GET", "/routes");
  ASSERT_EQ(routes.status, 200);
  EXPECT_NE(routes.body.find("\"canary\""), std::string::npos) << routes.body;
  auto status = cli({"--admin", admin, "status", "--json"});
  EXPECT_EQ(status.exit_code, 0);
  EXPECT_FALSE(json::parse(status.output)["proxy"].is_null());
}

TEST_F(RoutesCliTest, StatusShowsTheShadowSampleWithEveryDropAndItsReason) {
  // The monolith here is the proxy's own admin API (any answer will do: copies are offered after
  // the client's answer); a budget of one copy a second drops the rest of a burst, by name.
  const uint16_t admin_port = strangler::testing::freeLoopbackPort();
  const std::string admin_address = "127.0.0.1:" + std::to_string(admin_port);
  std::ofstream(config_) << json{
      {"listen", "127.0.0.1:0"},
      {"admin", {{"listen", admin_address}}},
      {"upstreams",
       {{"monolith", {{"endpoints", {admin_address}}, {"timeout_ms", 500}}},
        {"driver-service", {{"endpoints", {"127.0.0.1:9"}}, {"timeout_ms", 500}}}}},
      {"default_upstream", "monolith"},
      {"routes",
       {{{"name", "drivers"},
         {"match", {{"path", "/api/drivers/**"}}},
         {"target", "driver-service"},
         {"stage", "shadow"},
         {"shadow",
          {{"max_rate", 1}}}}}}}.dump();
  auto proxy = strangler::testing::ChildProcess::start(STRANGLER_PROXY_BIN,
                                                       {"--config", config_, "--workers", "1"});
  const auto line = proxy->waitForLine("listening on http://", std::chrono::seconds(20));
  ASSERT_TRUE(line) << proxy->output();
  std::smatch m;
  ASSERT_TRUE(std::regex_search(*line, m, std::regex(R"(listening on http://127\.0\.0\.1:(\d+))")));
  const auto port = static_cast<uint16_t>(std::stoi(m[1].str()));
  for (int i = 0; i < 10; ++i)
    strangler::testing::httpRequest("127.0.0.1", port, "GET", "/api/drivers/" + std::to_string(i));
  std::string output;
  for (int i = 0; i < 100; ++i) {  // until the one copy let through has failed on the target
    output = cli({"--admin", "http://" + admin_address, "status"}).output;
    if (output.find("max_rate 9") != std::string::npos) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  EXPECT_NE(
      output.find(
          "    shadow: 0 compared (0.0% of the sample), 0 mismatched, 9 dropped (max_rate 9)"),
      std::string::npos)
      << output;
}

}  // namespace
}  // namespace strangler::cli
