// Fault: the target of an extracted route (a real process) is SIGKILLed under keep-alive load
// and restarted on the same port. Idempotent requests must never fail: the monolith serves
// them while the target is gone, the circuit breaker opens, and traffic returns after restart.
#include <gtest/gtest.h>

#include <csignal>
#include <iostream>

#include "fault_support.h"
#include "proxy_harness.h"

namespace strangler::fault {
namespace {

using nlohmann::json;
using proxy::testing::FakeUpstream;
using proxy::testing::ProxyProcess;
using std::chrono::milliseconds;

int64_t sinceEpochNs(Clock::time_point at) {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(at.time_since_epoch()).count();
}

TEST(TargetKilledUnderLoadTest, FallbackHidesTheOutageAndTrafficReturnsAfterRestart) {
  const bool full = fullRun();
  // The fake monolith serves 32 connections at a time (a thread each) and each of the two proxy
  // workers keeps its own pool: more clients would measure the fake, not the proxy.
  const int connections = full ? 16 : 8;
  const milliseconds warm_up(full ? 3000 : 1000);
  const milliseconds outage(full ? 5000 : 2000);
  constexpr int kOpenMs = 1000;

  FakeUpstream monolith("monolith");
  auto backend = std::make_unique<BackendProcess>("service", 0);
  const uint16_t port = backend->port();
  ASSERT_NE(port, 0) << "fake backend did not start";
  json config = proxy::testing::baseConfig(monolith);
  config["upstreams"]["service"] = {
      {"endpoints", {"127.0.0.1:" + std::to_string(port)}},
      {"timeout_ms", 1000},
      {"connect_timeout_ms", 300},
      {"eject_ms", 200},
      {"circuit_breaker", {{"consecutive_failures", 5}, {"open_ms", kOpenMs}}}};
  config["routes"] = json::array({{{"name", "drivers"},
                                   {"match", {{"path", "/api/drivers/**"}, {"methods", {"GET"}}}},
                                   {"target", "service"},
                                   {"stage", "extracted"},
                                   {"fallback", true}}});
  ProxyProcess proxy(config);
  ASSERT_TRUE(proxy.running());

  std::atomic<int64_t> from_service{0};
  std::atomic<int64_t> from_monolith{0};
  std::atomic<int64_t> restarted_ns{0};
  std::atomic<int64_t> back_on_target_ns{0};
  LoadGenerator load(
      {.port = proxy.port(), .connections = connections, .path_prefix = "/api/drivers/"},
      [&](const LoadResponse& response) {
        if (response.upstream == "service") {
          ++from_service;
          const int64_t restarted = restarted_ns.load();
          int64_t unset = 0;
          if (restarted != 0 && sinceEpochNs(response.at) > restarted)
            back_on_target_ns.compare_exchange_strong(unset, sinceEpochNs(response.at));
        } else if (response.upstream == "monolith") {
          ++from_monolith;
        }
      });
  load.start();
  std::this_thread::sleep_for(warm_up);
  const int64_t served_by_target_before = from_service.load();

  const auto metrics = [&] { return proxy.admin("GET", "/metrics").body; };
  const std::string openings = "strangler_proxy_circuit_openings_total{upstream=\"service\"}";
  const double openings_before = metricSum(metrics(), openings);
  const auto killed_at = Clock::now();
  backend->process().signal(SIGKILL);
  ASSERT_TRUE(backend->process().wait(std::chrono::seconds(5)).has_value());
  const bool opened = waitUntil([&] { return metricSum(metrics(), openings) > openings_before; },
                                std::chrono::seconds(10), milliseconds(2));
  const auto opened_at = Clock::now();
  const int64_t monolith_before_outage = from_monolith.load();
  std::this_thread::sleep_for(outage);
  const int64_t served_by_monolith_in_outage = from_monolith.load() - monolith_before_outage;

  backend.reset();
  auto restarted = std::make_unique<BackendProcess>("service", port);
  ASSERT_EQ(restarted->port(), port) << "could not restart the backend on its port";
  // Counted from the moment the target listens again (its interpreter's start-up aside).
  restarted_ns = sinceEpochNs(Clock::now());
  const bool recovered =
      waitUntil([&] { return back_on_target_ns.load() != 0; }, std::chrono::seconds(15));
  std::this_thread::sleep_for(milliseconds(500));
  const LoadTotals totals = load.stop();

  const double fallbacks =
      metricSum(metrics(), "strangler_proxy_fallbacks_total{route=\"drivers\"");
  const double open_ms = opened ? millisBetween(killed_at, opened_at) : -1;
  const double recovery_ms =
      recovered ? static_cast<double>(back_on_target_ns.load() - restarted_ns.load()) / 1e6 : -1;
  std::cout << "target killed under load: " << totals.describe() << std::endl;
  reportFigure(
      "target_kill.requests", static_cast<double>(totals.requests), "-",
      "requests sent by " + std::to_string(connections) + " keep-alive clients during the run");
  reportFigure("target_kill.client_errors", static_cast<double>(totals.clientErrors()), "0",
               "client-visible errors (non-2xx or no answer) while the target was killed");
  reportFigure("target_kill.fallbacks", fallbacks, "> 0",
               "requests served by the monolith instead (strangler_proxy_fallbacks_total)");
  reportFigure("target_kill.breaker_open_ms", open_ms, "< 1000",
               "SIGKILL to circuit breaker open (circuit_openings_total, polled every 2 ms)");
  reportFigure("target_kill.recovery_ms", recovery_ms, "<= 1500",
               "target listening again to the first request it serves (open_ms 1000)");

  EXPECT_EQ(totals.clientErrors(), 0) << totals.describe();
  EXPECT_GT(served_by_target_before, 0) << "the target served before the kill";
  EXPECT_GT(served_by_monolith_in_outage, 0) << "the monolith served during the outage";
  EXPECT_GT(fallbacks, 0);
  EXPECT_TRUE(opened) << "the circuit breaker never opened";
  EXPECT_TRUE(recovered) << "no request reached the restarted target";
  EXPECT_LT(recovery_ms, 5000);
  EXPECT_EQ(proxy.admin("GET", "/healthz").status, 200);
}

}  // namespace
}  // namespace strangler::fault
