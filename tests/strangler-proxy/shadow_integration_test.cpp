// Integration: the shadow stage of the real strangler-proxy binary, with a monolith and a target
// on loopback that agree, disagree on a field, differ only in ignored or noisy fields, time out,
// fail with 500, or speak another model through the ACL.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <fstream>
#include <thread>
#include <vector>

#include "proxy_harness.h"
#include "strangler/proxy/config.h"

namespace strangler::proxy::testing {
namespace {

using nlohmann::json;
using Clock = std::chrono::steady_clock;

class ShadowTest : public ::testing::Test {
 protected:
  FakeUpstream monolith_{"monolith"};
  FakeUpstream service_{"service"};

  json config(const json& shadow = json::object(), const json& upstream_extra = json::object()) {
    json config = baseConfig(monolith_);
    addUpstream(config, service_, upstream_extra);
    json route = {{"name", "drivers"},
                  {"match", {{"path", "/api/drivers/**"}}},
                  {"target", "service"},
                  {"stage", "shadow"}};
    if (!shadow.empty()) route["shadow"] = shadow;
    config["routes"] = json::array({route});
    return config;
  }

  // Polls /diffs until `done(counters)` holds or 10 s pass; returns the last answer.
  static json waitDiffs(ProxyProcess& proxy, const std::function<bool(const json&)>& done) {
    json last;
    const auto deadline = Clock::now() + std::chrono::seconds(10);
    while (Clock::now() < deadline) {
      const auto response = proxy.admin("GET", "/diffs?route=drivers");
      if (response.status == 200) {
        last = response.json();
        if (done(last["counters"])) return last;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    return last;
  }

  static std::function<bool(const json&)> compared(uint64_t n) {
    return [n](const json& c) { return c["compared"].get<uint64_t>() >= n; };
  }
};

TEST_F(ShadowTest, AgreeingSidesMatchAndTheClientIsServedByTheMonolith) {
  monolith_.setResponder([](const ReceivedRequest&) {
    return json::parse(R"({"id": 7, "name": "Ann", "rating": 4.5})");
  });
  service_.setResponder([](const ReceivedRequest&) {
    return json::parse(R"({"rating": 4.50, "name": "Ann", "id": 7.0})");
  });
  ProxyProcess proxy(config());
  ASSERT_TRUE(proxy.running());
  for (int i = 0; i < 5; ++i) {
    const auto response = proxy.get("/api/drivers/7?verbose=1", {{"X-User-Id", "42"}});
    ASSERT_EQ(response.status, 200);
    EXPECT_EQ(response.header("x-strangler-upstream"), "monolith");
  }
  const json diffs = waitDiffs(proxy, compared(5));
  EXPECT_EQ(diffs["counters"]["compared"], 5);
  EXPECT_EQ(diffs["counters"]["matched"], 5);
  EXPECT_EQ(diffs["counters"]["mismatched"], 0);
  EXPECT_TRUE(diffs["diffs"].empty());
  ASSERT_EQ(service_.count(), 5u);
  const auto copy = service_.requests().front();
  EXPECT_EQ(copy.header("x-strangler-shadow"), "1");
  EXPECT_EQ(copy.uri, "/api/drivers/7?verbose=1");
  EXPECT_EQ(copy.header("x-user-id"), "42");
  // The monolith never sees the marker.
  EXPECT_FALSE(monolith_.requests().front().has("x-strangler-shadow"));

  const json routes = proxy.admin("GET", "/routes").json();
  EXPECT_EQ(routes["routes"][0]["shadow"]["compared"], 5);
  EXPECT_EQ(routes["routes"][0]["shadow"]["mismatch_rate"], 0.0);
  const auto metrics = proxy.admin("GET", "/metrics").body;
  EXPECT_NE(metrics.find("strangler_proxy_shadow_total{route=\"drivers\",outcome=\"matched\"} 5"),
            std::string::npos)
      << metrics;
}

TEST_F(ShadowTest, ADifferingFieldIsAMismatchWithBothAnswersKept) {
  monolith_.setResponder([](const ReceivedRequest&) {
    return json{{"id", 7}, {"name", "Ann"}, {"status", "ok"}};
  });
  service_.setResponder([](const ReceivedRequest&) {
    return json{{"id", 7}, {"name", "Bob"}, {"status", "ok"}};
  });
  ProxyProcess proxy(config());
  ASSERT_TRUE(proxy.running());
  for (int i = 0; i < 4; ++i) {
    const auto response = proxy.get("/api/drivers/7", {{"Authorization", "Bearer secret"}});
    ASSERT_EQ(response.status, 200);
    EXPECT_EQ(response.json()["name"], "Ann");  // the client always gets the monolith's answer
  }
  const json diffs = waitDiffs(proxy, compared(4));
  EXPECT_EQ(diffs["counters"]["mismatched"], 4);
  EXPECT_EQ(diffs["counters"]["mismatch_rate"], 1.0);
  ASSERT_EQ(diffs["diffs"].size(), 4u);
  const json& diff = diffs["diffs"][0];
  EXPECT_EQ(diff["differences"], json::array({"/name"}));
  EXPECT_EQ(diff["method"], "GET");
  EXPECT_EQ(diff["path"], "/api/drivers/7");
  EXPECT_EQ(diff["monolith"]["status"], 200);
  EXPECT_EQ(json::parse(diff["monolith"]["body"].get<std::string>())["name"], "Ann");
  EXPECT_EQ(json::parse(diff["target"]["body"].get<std::string>())["name"], "Bob");
  // Credentials are not kept in memory for anyone reading /diffs.
  EXPECT_EQ(diff["request"]["headers"]["Authorization"], "[redacted]");
}

TEST_F(ShadowTest, IgnoredPointersAndMonolithNoiseAreNotMismatches) {
  std::atomic<int> sequence{0};
  monolith_.setResponder([&](const ReceivedRequest&) {
    return json{{"id", 7},
                {"request_seq", ++sequence},
                {"updated_at", 100},
                {"items", json::array({{{"seen", 1}, {"v", 1}}})}};
  });
  service_.setResponder([](const ReceivedRequest&) {
    return json{{"id", 7},
                {"request_seq", -1},
                {"updated_at", 200},
                {"items", json::array({{{"seen", 2}, {"v", 1}}})}};
  });
  {
    // Without the noise filter, the per-request field is a mismatch.
    ProxyProcess proxy(config({{"ignore", {"/updated_at", "/items/*/seen"}}}));
    ASSERT_TRUE(proxy.running());
    for (int i = 0; i < 3; ++i)
      ASSERT_EQ(proxy.get("/api/drivers/7").status, 200);
    const json diffs = waitDiffs(proxy, compared(3));
    EXPECT_EQ(diffs["counters"]["mismatched"], 3);
    ASSERT_FALSE(diffs["diffs"].empty());
    EXPECT_EQ(diffs["diffs"][0]["differences"], json::array({"/request_seq"}));
  }
  {
    // With it, the proxy asks the monolith twice, sees request_seq change, and ignores it.
    monolith_.clear();
    ProxyProcess proxy(
        config({{"ignore", {"/updated_at", "/items/*/seen"}}, {"noise_filter", true}}));
    ASSERT_TRUE(proxy.running());
    for (int i = 0; i < 3; ++i)
      ASSERT_EQ(proxy.get("/api/drivers/7").status, 200);
    const json diffs = waitDiffs(proxy, compared(3));
    EXPECT_EQ(diffs["counters"]["matched"], 3);
    EXPECT_EQ(diffs["counters"]["mismatched"], 0);
    EXPECT_EQ(monolith_.count(), 6u);  // each request asked twice
  }
}

TEST_F(ShadowTest, ASlowTargetNeverSlowsTheClientAndTimesOutAsATargetError) {
  service_.delay_ms = 2000;
  ProxyProcess proxy(config({}, {{"timeout_ms", 500}}));
  ASSERT_TRUE(proxy.running());
  for (int i = 0; i < 3; ++i) {
    const auto started = Clock::now();
    const auto response = proxy.get("/api/drivers/7");
    const auto elapsed = Clock::now() - started;
    ASSERT_EQ(response.status, 200);
    // The target sleeps 2 s; the client is answered by the monolith alone.
    EXPECT_LT(elapsed, std::chrono::milliseconds(1000));
  }
  const json diffs =
      waitDiffs(proxy, [](const json& c) { return c["target_errors"].get<uint64_t>() >= 3; });
  EXPECT_EQ(diffs["counters"]["target_errors"], 3);
  EXPECT_EQ(diffs["counters"]["compared"], 0);
}

TEST_F(ShadowTest, ATargetFailingWith500IsATargetErrorAndAStatusMismatch) {
  service_.status = 500;
  ProxyProcess proxy(config());
  ASSERT_TRUE(proxy.running());
  for (int i = 0; i < 2; ++i)
    ASSERT_EQ(proxy.get("/api/drivers/7").status, 200);
  const json diffs = waitDiffs(proxy, compared(2));
  EXPECT_EQ(diffs["counters"]["target_errors"], 2);
  EXPECT_EQ(diffs["counters"]["mismatched"], 2);
  ASSERT_FALSE(diffs["diffs"].empty());
  EXPECT_EQ(diffs["diffs"][0]["differences"][0], "status");
  EXPECT_EQ(diffs["diffs"][0]["target"]["status"], 500);
}

TEST_F(ShadowTest, WritesAreShadowedOnlyWhenTheRouteAllowsIt) {
  {
    // Default options: PUT and DELETE are idempotent but writes — never copied, like POST and
    // PATCH. Each side's requests counted, per request: the monolith got every one once.
    ProxyProcess proxy(config());
    ASSERT_TRUE(proxy.running());
    for (const char* method : {"POST", "PUT", "PATCH", "DELETE"})
      ASSERT_EQ(proxy.request(method, "/api/drivers/1", R"({"name": "x"})").status, 200);
    ASSERT_EQ(proxy.get("/api/drivers/1").status, 200);
    waitDiffs(proxy, compared(1));
    std::this_thread::sleep_for(std::chrono::milliseconds(200));  // a stray copy would be in
    for (const auto& request : service_.requests())
      EXPECT_EQ(request.method, "GET");
    EXPECT_EQ(service_.count(), 1u);
    EXPECT_EQ(monolith_.count(), 5u);
    const json counters = proxy.admin("GET", "/diffs?route=drivers").json()["counters"];
    EXPECT_EQ(counters["eligible"], 1) << counters.dump();
  }
  service_.clear();
  monolith_.clear();
  {
    // The noise filter asks the monolith again: a safe request only, never a write.
    ProxyProcess proxy(config({{"noise_filter", true}, {"unsafe_methods", true}}));
    ASSERT_TRUE(proxy.running());
    ASSERT_EQ(proxy.request("PUT", "/api/drivers/2", R"({"name": "y"})").status, 200);
    ASSERT_EQ(proxy.get("/api/drivers/2").status, 200);
    waitDiffs(proxy, compared(2));
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
    int puts = 0, gets = 0;
    for (const auto& request : monolith_.requests()) {
      puts += request.method == "PUT";
      gets += request.method == "GET";
    }
    EXPECT_EQ(puts, 1);  // the client's, not repeated
    EXPECT_EQ(gets, 2);  // the client's and the noise filter's
  }
  service_.clear();
  {
    ProxyProcess proxy(config({{"unsafe_methods", true}}));
    ASSERT_TRUE(proxy.running());
    ASSERT_EQ(proxy.request("PUT", "/api/drivers/1", R"({"name": "x"})").status, 200);
    waitDiffs(proxy, compared(1));
    ASSERT_EQ(service_.count(), 1u);
    EXPECT_EQ(service_.requests()[0].method, "PUT");
    EXPECT_EQ(service_.requests()[0].body, R"({"name": "x"})");
    EXPECT_EQ(service_.requests()[0].header("x-strangler-shadow"), "1");
  }
}

TEST_F(ShadowTest, SampleLimitsTheCopies) {
  ProxyProcess proxy(config({{"sample", 0.25}}));
  ASSERT_TRUE(proxy.running());
  for (int i = 0; i < 200; ++i)
    ASSERT_EQ(proxy.get("/api/drivers/7").status, 200);
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  const auto copies = service_.count();
  // 200 × 0.25 = 50; ±25 is over 4 standard deviations.
  EXPECT_GT(copies, 25u);
  EXPECT_LT(copies, 75u);
}

TEST_F(ShadowTest, TheTargetsModelIsTranslatedThroughTheAclBeforeComparing) {
  // The monolith speaks the legacy driver API; the target the service's /v2 model.
  monolith_.setResponder([](const ReceivedRequest&) {
    return json::parse(R"({"id": 7, "name": "Ann", "phone": "+15550100",
      "car": {"plate": "ABC-1", "model": "Corolla"}, "status": "available",
      "location": {"lat": 52.52, "lng": 13.405}, "location_updated_at": 1700000000,
      "completed_trips": 3, "created_at": 1690000000})");
  });
  std::atomic<bool> agree{true};
  service_.setResponder([&](const ReceivedRequest&) {
    return json::parse(std::string(R"({"id": 7, "name": "Ann", "phone": "+15550100",
      "vehicle": {"plate": "ABC-1", "model": "Corolla"}, "status": ")") +
                       (agree ? "AVAILABLE" : "OFFLINE") + R"(",
      "location": {"lat": 52.52, "lng": 13.405}, "locationUpdatedAt": 1700000000,
      "createdAt": 1690000000, "updatedAt": 1700000001, "completedTrips": 3})");
  });
  json cfg = config({{"acl", "drivers"}});
  cfg["routes"][0]["rewrite"] = {{"prefix", "/api/drivers"}, {"to", "/v2/drivers"}};
  ProxyProcess proxy(cfg);
  ASSERT_TRUE(proxy.running());
  ASSERT_EQ(proxy.get("/api/drivers/7").status, 200);
  json diffs = waitDiffs(proxy, compared(1));
  EXPECT_EQ(diffs["counters"]["matched"], 1) << diffs.dump(2);
  ASSERT_EQ(service_.count(), 1u);
  EXPECT_EQ(service_.requests()[0].uri, "/v2/drivers/7");

  agree = false;
  ASSERT_EQ(proxy.get("/api/drivers/7").status, 200);
  diffs = waitDiffs(proxy, compared(2));
  EXPECT_EQ(diffs["counters"]["mismatched"], 1);
  ASSERT_FALSE(diffs["diffs"].empty());
  // Named in the legacy model, where the monolith's answer lives.
  EXPECT_EQ(diffs["diffs"][0]["differences"], json::array({"/status"}));
}

TEST_F(ShadowTest, ABurstAgainstASlowTargetIsDroppedNotQueuedWithoutBound) {
  service_.delay_ms = 300;
  service_.padding = 64 * 1024;
  monolith_.padding = 64 * 1024;
  json cfg = config();
  cfg["limits"] = {{"shadow_queue", 16}, {"shadow_concurrency", 1}};
  ProxyProcess proxy(cfg);
  ASSERT_TRUE(proxy.running());
  std::atomic<int> failures{0};
  std::vector<std::thread> clients;
  for (int t = 0; t < 8; ++t) {
    clients.emplace_back([&] {
      for (int i = 0; i < 50; ++i) {
        if (proxy.get("/api/drivers/7").status != 200) ++failures;
      }
    });
  }
  for (auto& client : clients)
    client.join();
  EXPECT_EQ(failures, 0);
  const json counters = proxy.admin("GET", "/diffs?route=drivers").json()["counters"];
  // 400 copies of ~64 KiB against a target taking 300 ms each: almost all are dropped.
  EXPECT_GT(counters["dropped"].get<uint64_t>(), 300u) << counters.dump();
  // Every drop says why: here the proxy-wide queue (16 copies, or its bytes).
  const json& by = counters["dropped_by"];
  EXPECT_EQ(by.value("queue_full", uint64_t{0}) + by.value("queue_bytes", uint64_t{0}),
            counters["dropped"].get<uint64_t>())
      << counters.dump();
  // Resident memory stays bounded: 16 queued copies of ~128 KiB, not 400 (~50 MiB).
  std::ifstream status("/proc/" + std::to_string(proxy.process().pid()) + "/status");
  uint64_t rss_kib = 0;
  for (std::string line; std::getline(status, line);) {
    if (line.rfind("VmRSS:", 0) == 0) rss_kib = std::stoull(line.substr(6));
  }
  EXPECT_GT(rss_kib, 0u);
  EXPECT_LT(rss_kib, 40u * 1024) << "proxy RSS " << rss_kib << " KiB";
}

/// Every copy offered is either compared (or failed, or too large) or dropped with a reason.
uint64_t accounted(const json& c) {
  return c["compared"].get<uint64_t>() + c["target_errors"].get<uint64_t>() +
         c["too_large"].get<uint64_t>() + c["dropped"].get<uint64_t>();
}

uint64_t sumOf(const json& object) {
  uint64_t sum = 0;
  for (const auto& [key, value] : object.items())
    sum += value.get<uint64_t>();
  return sum;
}

TEST_F(ShadowTest, TheMismatchCounterEqualsTheDifferingAnswersAndEveryCopyIsAccounted) {
  // Every third driver differs on the target: exactly those are mismatches.
  const auto idOf = [](const ReceivedRequest& r) {
    return std::stoi(r.uri.substr(r.uri.rfind('/') + 1));
  };
  monolith_.setResponder([&](const ReceivedRequest& r) {
    return json{{"id", idOf(r)}, {"name", "Ann"}};
  });
  service_.setResponder([&](const ReceivedRequest& r) {
    return json{{"id", idOf(r)}, {"name", idOf(r) % 3 == 0 ? "Bob" : "Ann"}};
  });
  // Short timeouts on both sides: a stopped FakeUpstream may leave connections open unanswered.
  json cfg = config({}, {{"timeout_ms", 300}});
  cfg["upstreams"]["monolith"]["timeout_ms"] = 300;
  ProxyProcess proxy(cfg);
  ASSERT_TRUE(proxy.running());
  for (int id = 1; id <= 60; ++id)
    ASSERT_EQ(proxy.get("/api/drivers/" + std::to_string(id)).status, 200);
  json c = waitDiffs(proxy, compared(60))["counters"];
  EXPECT_EQ(c["compared"], 60) << c.dump();
  EXPECT_EQ(c["mismatched"], 20) << c.dump();
  EXPECT_EQ(c["matched"], 40) << c.dump();
  // A route without data cannot lag: every mismatch is real.
  EXPECT_EQ(c["mismatched_by"]["real"], 20) << c.dump();

  // A dead target: clients are served all the same, each copy is a target error.
  service_.stop();
  for (int id = 61; id <= 70; ++id)
    ASSERT_EQ(proxy.get("/api/drivers/" + std::to_string(id)).status, 200);
  c = waitDiffs(proxy, [](const json& x) { return x["target_errors"] == 10; })["counters"];
  EXPECT_EQ(c["target_errors"], 10) << c.dump();
  // A monolith answer past the capture limit: served whole, not compared, counted.
  monolith_.padding = 2u << 20;
  for (int id = 71; id <= 75; ++id) {
    const auto response = proxy.get("/api/drivers/" + std::to_string(id));
    ASSERT_EQ(response.status, 200);
    EXPECT_GT(response.body.size(), 2u << 20);
  }
  monolith_.padding = 0;
  // The monolith times out: the client gets 504 and the copy has nothing to compare with.
  monolith_.delay_ms = 1500;
  for (int id = 76; id <= 78; ++id)
    EXPECT_EQ(proxy.get("/api/drivers/" + std::to_string(id)).status, 504);
  c = waitDiffs(proxy, [](const json& x) { return x["unanswered"] == 3; })["counters"];
  EXPECT_EQ(c["too_large"], 5) << c.dump();
  EXPECT_EQ(c["unanswered"], 3) << c.dump();
  EXPECT_EQ(c["compared"], 60) << c.dump();
  EXPECT_EQ(c["mismatched"], 20) << c.dump();
  // Every copy the sample took ends in exactly one of the counts.
  EXPECT_EQ(c["sampled"], 78) << c.dump();
  EXPECT_EQ(c["eligible"], 78) << c.dump();
  EXPECT_EQ(c["compared"].get<uint64_t>() + c["target_errors"].get<uint64_t>() +
                c["too_large"].get<uint64_t>() + c["unanswered"].get<uint64_t>() +
                c["dropped"].get<uint64_t>(),
            78u)
      << c.dump();
  EXPECT_NEAR(c["compared_share"].get<double>(), 60.0 / 78.0, 1e-9);
}

TEST_F(ShadowTest, ARouteOverItsRateBudgetDropsCopiesAndSaysWhy) {
  ProxyProcess proxy(config({{"max_rate", 5}}));
  ASSERT_TRUE(proxy.running());
  for (int i = 0; i < 60; ++i)
    ASSERT_EQ(proxy.get("/api/drivers/" + std::to_string(i)).status, 200);
  for (int i = 0; i < 5; ++i)  // writes: not eligible on this route (no unsafe_methods)
    ASSERT_EQ(proxy.request("PUT", "/api/drivers/" + std::to_string(i), "{}").status, 200);
  const json counters =
      waitDiffs(proxy, [](const json& c) { return accounted(c) >= 60; })["counters"];
  ASSERT_EQ(accounted(counters), 60u) << counters.dump();
  // At most a second's worth (5) plus what the bucket refilled while 60 requests ran.
  const uint64_t over = counters["dropped_by"].value("max_rate", uint64_t{0});
  EXPECT_GE(over, 30u) << counters.dump();
  EXPECT_EQ(sumOf(counters["dropped_by"]), counters["dropped"].get<uint64_t>());
  EXPECT_EQ(counters["compared"].get<uint64_t>(), 60u - over) << counters.dump();
  // The share the gates and the dashboard show is of the eligible requests: 60, not 65.
  EXPECT_EQ(counters["eligible"].get<uint64_t>(), 60u) << counters.dump();
  EXPECT_DOUBLE_EQ(counters["compared_share"].get<double>(), (60.0 - over) / 60.0);
  EXPECT_EQ(metricValue(proxy,
                        "strangler_proxy_shadow_dropped_total{route=\"drivers\","
                        "reason=\"max_rate\"}"),
            static_cast<double>(over));
}

TEST_F(ShadowTest, ARouteAtItsInflightBudgetDropsCopiesAndSaysWhy) {
  service_.delay_ms = 200;
  ProxyProcess proxy(config({{"max_inflight", 2}}));
  ASSERT_TRUE(proxy.running());
  std::atomic<int> failures{0};
  std::vector<std::thread> clients;
  for (int t = 0; t < 8; ++t) {
    clients.emplace_back([&] {
      for (int i = 0; i < 5; ++i) {
        if (proxy.get("/api/drivers/7").status != 200) ++failures;
      }
    });
  }
  for (auto& client : clients)
    client.join();
  EXPECT_EQ(failures, 0);
  const json counters =
      waitDiffs(proxy, [](const json& c) { return accounted(c) >= 40; })["counters"];
  ASSERT_EQ(accounted(counters), 40u) << counters.dump();
  EXPECT_GT(counters["dropped_by"].value("max_inflight", uint64_t{0}), 0u) << counters.dump();
  EXPECT_EQ(sumOf(counters["dropped_by"]), counters["dropped"].get<uint64_t>());
  EXPECT_GE(counters["compared"].get<uint64_t>(), 2u) << counters.dump();
}

TEST_F(ShadowTest, ShadowBudgetsAreValidated) {
  json bad = config({{"max_rate", -1}});
  auto parsed = ProxyConfig::create(bad);
  ASSERT_FALSE(parsed.ok());
  EXPECT_NE(parsed.error().message.find("routes[0].shadow.max_rate"), std::string::npos)
      << parsed.error().message;
  parsed = ProxyConfig::create(config({{"max_inflight", "two"}}));
  ASSERT_FALSE(parsed.ok());
  EXPECT_NE(parsed.error().message.find("routes[0].shadow.max_inflight"), std::string::npos)
      << parsed.error().message;
  parsed = ProxyConfig::create(config({{"max_inflight", 3}, {"max_rate", 2.5}}));
  ASSERT_TRUE(parsed.ok()) << parsed.error().message;
  EXPECT_EQ(parsed->routes[0].shadow->max_inflight, 3);
  EXPECT_EQ(parsed->routes[0].shadow->max_rate, 2.5);
}

TEST_F(ShadowTest, DiffsOfAnUnknownRouteAre404) {
  ProxyProcess proxy(config());
  ASSERT_TRUE(proxy.running());
  EXPECT_EQ(proxy.admin("GET", "/diffs?route=nope").status, 404);
  const auto all = proxy.admin("GET", "/diffs");
  ASSERT_EQ(all.status, 200);
  EXPECT_TRUE(all.json()["routes"].contains("drivers"));
}

}  // namespace
}  // namespace strangler::proxy::testing
