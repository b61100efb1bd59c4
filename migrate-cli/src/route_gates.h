#pragma once

#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "strangler/proxy/config.h"

namespace strangler::cli {

/// One gate of `strangler routes advance`, judged on the proxy's live figures.
struct GateCheck {
  std::string name;    ///< "samples", "mismatch rate", "target error rate", "p99 vs monolith"
  std::string figure;  ///< the live figure, formatted
  std::string limit;   ///< the gate, formatted ("≥ 100", "≤ 1.00%")
  bool passed = false;
  std::string note;  ///< why a gate was not judged, when it was not
};

/// The verdict on moving a route from one step to the next.
struct GateReport {
  proxy::PlanStep from;
  proxy::PlanStep to;
  std::vector<GateCheck> checks;
  bool passed() const;
  nlohmann::json toJson() const;
  /// A small table, one gate a line.
  std::string table() const;
};

/// Judges the gates of `route` for leaving step `from` for `to`, from the route's entry of the
/// proxy's GET /routes (whose "sides" and "shadow" figures cover the current step only).
/// Leaving `monolith` has no gate: shadowing is free of risk. From `shadow` the gates are the
/// number of comparisons and the mismatch rate (and the target's failures among them); from a
/// canary, the target's requests, its error rate and its p99 latency against the monolith's;
/// and, with several replicas, that every registered one was counted.
GateReport judgeGates(const proxy::RouteConfig& route, const proxy::PlanStep& from,
                      const proxy::PlanStep& to, const nlohmann::json& live_route);

}  // namespace strangler::cli
