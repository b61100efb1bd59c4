#pragma once

#include <array>
#include <chrono>
#include <cstdint>
#include <map>
#include <mutex>
#include <string>

#include <nlohmann/json.hpp>

#include "strangler/proxy/config.h"
#include "strangler/proxy/metrics.h"
#include "strangler/proxy/shadow_sink.h"

namespace strangler::proxy {

/// Requests one side of a route (the monolith or the target) answered, with their latency
/// histogram; what the gates of `strangler routes advance` and the proxy's auto-rollback read.
struct SideFigures {
  uint64_t requests = 0;
  uint64_t errors = 0;  ///< answered 5xx (the proxy's own 502/504 included)
  std::array<uint64_t, Metrics::kBuckets.size() + 1> buckets{};

  double errorRate() const {
    return requests == 0 ? 0.0 : static_cast<double>(errors) / static_cast<double>(requests);
  }
  /// The q-quantile latency in ms, interpolated within its histogram bucket; 0 without requests.
  double quantileMs(double q) const;
  void add(const Metrics::Series& series);
  SideFigures minus(const SideFigures& earlier) const;
  void add(const SideFigures& more);
  nlohmann::json toJson() const;
};

/// A route's figures: per side, and its shadow comparisons.
struct RouteFigures {
  SideFigures monolith;
  SideFigures target;
  ShadowCounters shadow;

  RouteFigures minus(const RouteFigures& earlier) const;
  /// Adds another replica's figures of the same step.
  void add(const RouteFigures& more);
  /// The counts alone (histogram buckets, no rate or quantile), as replicas send them to be
  /// summed (GET /figures); fromRaw reads them back, a missing count as 0.
  nlohmann::json toRaw() const;
  static RouteFigures fromRaw(const nlohmann::json& raw);
};

/// Every route's figures since the proxy started, from the metrics and the shadow sink.
std::map<std::string, RouteFigures> routeFigures(const Metrics::Totals& totals,
                                                 const ProxyConfig& config,
                                                 const ShadowSink& shadow);

/// Remembers each route's figures at the moment it entered its current step (stage, percent,
/// target), so the figures of the step alone can be read: a gate judges the canary at 10%, not
/// the whole history of the route.
class StepTracker {
 public:
  /// Called with each config that starts serving, and the figures at that moment.
  void onPublish(const ProxyConfig& config, const std::map<std::string, RouteFigures>& now);
  /// The figures of `route` since its current step began, and when it began (epoch ms).
  std::pair<RouteFigures, int64_t> sinceStep(const std::string& route,
                                             const std::map<std::string, RouteFigures>& now) const;

 private:
  struct Baseline {
    Stage stage = Stage::kMonolith;
    int percent = 0;
    std::string target;
    RouteFigures figures;
    int64_t since_ms = 0;
  };
  mutable std::mutex mutex_;
  std::map<std::string, Baseline> baselines_;
};

}  // namespace strangler::proxy
