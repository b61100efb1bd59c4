// Fault: a storm of hot reloads under keep-alive load, one in ten of them an invalid config.
// No request may fail; every invalid config is refused with 400 and the previous config
// (version and hash) keeps serving.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <iostream>

#include "fault_support.h"
#include "proxy_harness.h"

namespace strangler::fault {
namespace {

using nlohmann::json;
using proxy::testing::FakeUpstream;
using proxy::testing::ProxyProcess;
using std::chrono::milliseconds;

const strangler::testing::ChildProcess::Env kTokenEnv = {
    {"STRANGLER_TEST_ADMIN_TOKEN", "storm-token"}};
const std::map<std::string, std::string> kAuth = {{"Authorization", "Bearer storm-token"}};

json validConfig(const FakeUpstream& monolith, const FakeUpstream& service, int step) {
  json config = proxy::testing::baseConfig(monolith);
  proxy::testing::addUpstream(config, service, {{"timeout_ms", 2000 + step % 7}});
  config["routes"] = json::array({{{"name", "drivers"},
                                   {"match", {{"path", "/api/drivers/**"}}},
                                   {"target", "service"},
                                   {"stage", step % 2 == 0 ? "extracted" : "monolith"},
                                   {"fallback", true}},
                                  {{"name", "trips"},
                                   {"match", {{"path", "/api/trips/**"}}},
                                   {"target", "service"},
                                   {"stage", "canary"},
                                   {"percent", 1 + step % 99}}});
  return config;
}

// Ten kinds of broken config, from unparsable text to configs that only fail validation.
std::string invalidConfig(const json& valid, int kind) {
  json broken = valid;
  switch (kind % 10) {
    case 0:
      return valid.dump().substr(0, valid.dump().size() / 2);  // truncated mid-write
    case 1:
      return "";
    case 2:
      broken["routes"][1]["percent"] = 150;
      break;
    case 3:
      broken["routes"][0]["target"] = "nowhere";
      break;
    case 4:
      broken["surprise"] = true;
      break;
    case 5:
      broken["routes"][1]["name"] = "drivers";
      break;
    case 6:
      broken["upstreams"]["service"]["endpoints"] = {"127.0.0.1"};
      break;
    case 7:
      broken["listen"] = 5;
      break;
    case 8:
      broken["routes"] = "all of them";
      break;
    default:
      broken["routes"][0]["stage"] = "sideways";
      break;
  }
  return broken.dump(2);
}

void writeText(const std::string& path, const std::string& text) {
  const std::string temp = path + ".tmp";
  std::ofstream(temp) << text;
  std::filesystem::rename(temp, path);
}

TEST(ReloadStormTest, HundredsOfReloadsUnderLoadDropNothingAndRefuseInvalidConfigs) {
  const bool full = fullRun();
  const int reloads = full ? 500 : 100;
  // The fake upstreams serve 32 connections at a time (a thread each) and each proxy worker
  // keeps its own pool, so the load stays well under 16 connections per worker.
  const int connections = full ? 12 : 8;
  const milliseconds pause(full ? 20 : 10);

  FakeUpstream monolith("monolith");
  FakeUpstream service("service");
  ProxyProcess proxy(validConfig(monolith, service, 0), kTokenEnv);
  ASSERT_TRUE(proxy.running());

  // Idempotent reads and, on their own connections, POSTs that no fallback may replay.
  LoadGenerator reads(
      {.port = proxy.port(), .connections = connections, .path_prefix = "/api/drivers/"});
  LoadGenerator writes({.port = proxy.port(),
                        .connections = 2,
                        .method = "POST",
                        .path_prefix = "/api/trips/",
                        .body = "{\"fare\":12}"});
  reads.start();
  writes.start();

  int applied = 0;
  int rejected = 0;
  int invalid_changed_config = 0;
  int unexpected_answers = 0;
  int wrong_side_after_invalid = 0;
  int valid_step = 0;
  for (int i = 0; i < reloads; ++i) {
    const json before = proxy.admin("GET", "/routes").json();
    if (i % 10 == 9) {
      writeText(proxy.configPath(),
                invalidConfig(validConfig(monolith, service, valid_step + 1), i / 10));
      const auto answer = proxy.admin("POST", "/reload", kAuth);
      if (answer.status == 400) {
        ++rejected;
      } else {
        ++unexpected_answers;
      }
      const json after = proxy.admin("GET", "/routes").json();
      if (after["version"] != before["version"] || after["config_hash"] != before["config_hash"])
        ++invalid_changed_config;
      // The old config keeps routing: drivers is extracted on even steps.
      const auto probe = proxy.get("/api/drivers/probe");
      const std::string expected = valid_step % 2 == 0 ? "service" : "monolith";
      if (probe.status != 200 || probe.header("x-strangler-upstream") != expected)
        ++wrong_side_after_invalid;
    } else {
      ++valid_step;
      proxy.writeConfig(validConfig(monolith, service, valid_step));
      const auto answer = proxy.admin("POST", "/reload", kAuth);
      if (answer.status == 200 && answer.json()["version"] == before["version"].get<int>() + 1) {
        ++applied;
      } else {
        ++unexpected_answers;
      }
    }
    std::this_thread::sleep_for(pause);
  }
  const LoadTotals read_totals = reads.stop();
  const LoadTotals write_totals = writes.stop();
  const json routes = proxy.admin("GET", "/routes").json();
  const std::string metrics = proxy.admin("GET", "/metrics").body;

  const int invalid = reloads / 10;
  std::cout << "reads: " << read_totals.describe() << "\nwrites: " << write_totals.describe()
            << std::endl;
  reportFigure("reload_storm.reloads", reloads, "-",
               "POST /reload under keep-alive load, every tenth config invalid");
  reportFigure("reload_storm.requests",
               static_cast<double>(read_totals.requests + write_totals.requests), "-",
               "requests sent during the storm (GET with fallback, POST without)");
  reportFigure("reload_storm.failed_requests",
               static_cast<double>(read_totals.clientErrors() + write_totals.clientErrors()), "0",
               "dropped or failed requests during the storm");
  reportFigure("reload_storm.invalid_rejected", rejected, std::to_string(invalid),
               "invalid configs refused with 400");
  reportFigure("reload_storm.invalid_changed_config", invalid_changed_config, "0",
               "invalid reloads after which /routes version or config_hash changed");
  reportFigure("reload_storm.valid_applied", applied, std::to_string(reloads - invalid),
               "valid reloads answered 200 with the next version");

  EXPECT_EQ(read_totals.clientErrors(), 0) << read_totals.describe();
  EXPECT_EQ(write_totals.clientErrors(), 0) << write_totals.describe();
  EXPECT_GT(read_totals.requests, reloads) << "the load ran through the storm";
  EXPECT_GT(write_totals.requests, 0);
  EXPECT_EQ(rejected, invalid);
  EXPECT_EQ(applied, reloads - invalid);
  EXPECT_EQ(unexpected_answers, 0);
  EXPECT_EQ(invalid_changed_config, 0);
  EXPECT_EQ(wrong_side_after_invalid, 0);
  EXPECT_EQ(routes["version"], 1 + reloads - invalid);
  EXPECT_EQ(metricSum(metrics, "strangler_proxy_config_reloads_total{result=\"rejected\"}"),
            invalid);
  EXPECT_EQ(metricSum(metrics, "strangler_proxy_config_reloads_total{result=\"ok\"}"),
            reloads - invalid);
}

}  // namespace
}  // namespace strangler::fault
