#pragma once
// The real `strangler sync` seen from a test: its status, and waiting on it.

#include <nlohmann/json.hpp>

#include <chrono>
#include <cstdint>
#include <functional>
#include <string>
#include <thread>
#include <vector>

#include "strangler/testing/process.h"

namespace strangler::testing {

/// `strangler sync status --json --from FROM --to TO`, parsed (null when it printed no JSON).
inline nlohmann::json syncStatus(const std::string& cli, const std::string& from,
                                 const std::string& to) {
  const auto status = runCommand(cli, {"sync", "status", "--json", "--from", from, "--to", to});
  const auto start = status.output.find('{');
  if (start == std::string::npos) return nullptr;
  return nlohmann::json::parse(status.output.substr(start), nullptr, false);
}

/// Polls the sync's status every 25 ms until `done` holds of it, for at most `timeout`.
inline bool waitForSync(const std::string& cli, const std::string& from, const std::string& to,
                        const std::function<bool(const nlohmann::json&)>& done,
                        std::chrono::milliseconds timeout = std::chrono::seconds(10)) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < deadline) {
    const auto status = syncStatus(cli, from, to);
    if (status.is_object() && done(status)) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(25));
  }
  return false;
}

/// A running `sync watch` holds the single-writer lease.
inline bool watchHoldsLease(const nlohmann::json& status) {
  return status["lease"].is_object();
}
/// No captured change is waiting on either side.
inline bool caughtUp(const nlohmann::json& status) {
  return status.value("pending_changes", int64_t{1}) == 0;
}

/// A proxy config with one route, drivers, that carries the drivers mapping's data, between the
/// monolith and driver-service on these ports; `step` is its stage (and percent).
inline nlohmann::json driversDataRouteConfig(uint16_t monolith_port, uint16_t service_port,
                                             const std::string& token_env,
                                             const nlohmann::json& step) {
  nlohmann::json route{{"name", "drivers"},
                       {"match", {{"path", "/api/drivers/**"}, {"methods", {"GET", "PUT"}}}},
                       {"target", "driver-service"},
                       {"data", "drivers"},
                       {"sticky", {{"header", "X-User-Id"}}}};
  route.update(step);
  return {{"listen", "127.0.0.1:0"},
          {"admin", {{"listen", "127.0.0.1:0"}, {"token_env", token_env}}},
          {"debug_headers", true},
          {"upstreams",
           {{"monolith", {{"endpoints", {"127.0.0.1:" + std::to_string(monolith_port)}}}},
            {"driver-service", {{"endpoints", {"127.0.0.1:" + std::to_string(service_port)}}}}}},
          {"default_upstream", "monolith"},
          {"routes", nlohmann::json::array({route})}};
}

}  // namespace strangler::testing
