#include "strangler/proxy/route_figures.h"

#include <algorithm>

namespace strangler::proxy {

double SideFigures::quantileMs(double q) const {
  uint64_t total = 0;
  for (const auto count : buckets)
    total += count;
  if (total == 0) return 0.0;
  const double rank = q * static_cast<double>(total);
  uint64_t seen = 0;
  for (size_t i = 0; i < buckets.size(); ++i) {
    if (buckets[i] == 0) continue;
    if (static_cast<double>(seen + buckets[i]) >= rank) {
      const double low = i == 0 ? 0.0 : Metrics::kBuckets[i - 1];
      // Past the last bound there is no upper edge: report the last bound.
      const double high = i < Metrics::kBuckets.size() ? Metrics::kBuckets[i] : low;
      const double within = (rank - static_cast<double>(seen)) / static_cast<double>(buckets[i]);
      return (low + (high - low) * std::clamp(within, 0.0, 1.0)) * 1000.0;
    }
    seen += buckets[i];
  }
  return Metrics::kBuckets.back() * 1000.0;
}

void SideFigures::add(const Metrics::Series& series) {
  for (const auto& [status, count] : series.by_status) {
    requests += count;
    if (status >= 500) errors += count;
  }
  for (size_t i = 0; i < buckets.size(); ++i)
    buckets[i] += series.buckets[i];
}

SideFigures SideFigures::minus(const SideFigures& earlier) const {
  const auto sub = [](uint64_t a, uint64_t b) { return a >= b ? a - b : 0; };
  SideFigures out;
  out.requests = sub(requests, earlier.requests);
  out.errors = sub(errors, earlier.errors);
  for (size_t i = 0; i < buckets.size(); ++i)
    out.buckets[i] = sub(buckets[i], earlier.buckets[i]);
  return out;
}

nlohmann::json SideFigures::toJson() const {
  return {{"requests", requests},
          {"errors_5xx", errors},
          {"error_rate", errorRate()},
          {"p50_ms", quantileMs(0.5)},
          {"p99_ms", quantileMs(0.99)}};
}

void SideFigures::add(const SideFigures& more) {
  requests += more.requests;
  errors += more.errors;
  for (size_t i = 0; i < buckets.size(); ++i)
    buckets[i] += more.buckets[i];
}

namespace {

nlohmann::json sideRaw(const SideFigures& side) {
  return {{"requests", side.requests}, {"errors", side.errors}, {"buckets", side.buckets}};
}

uint64_t count(const nlohmann::json& object, const char* name) {
  const auto it = object.find(name);
  return it != object.end() && it->is_number_unsigned() ? it->get<uint64_t>() : 0;
}

SideFigures sideFromRaw(const nlohmann::json& raw) {
  SideFigures side;
  if (!raw.is_object()) return side;
  side.requests = count(raw, "requests");
  side.errors = count(raw, "errors");
  // A replica with other histogram bounds (another version) adds nothing to the latency.
  if (const auto it = raw.find("buckets");
      it != raw.end() && it->is_array() && it->size() == side.buckets.size()) {
    for (size_t i = 0; i < side.buckets.size(); ++i)
      side.buckets[i] = (*it)[i].is_number_unsigned() ? (*it)[i].get<uint64_t>() : 0;
  }
  return side;
}

}  // namespace

void RouteFigures::add(const RouteFigures& more) {
  monolith.add(more.monolith);
  target.add(more.target);
  shadow.add(more.shadow);
}

nlohmann::json RouteFigures::toRaw() const {
  return {{"monolith", sideRaw(monolith)}, {"target", sideRaw(target)}, {"shadow", shadow.toRaw()}};
}

RouteFigures RouteFigures::fromRaw(const nlohmann::json& raw) {
  RouteFigures out;
  if (!raw.is_object()) return out;
  out.monolith = sideFromRaw(raw.value("monolith", nlohmann::json()));
  out.target = sideFromRaw(raw.value("target", nlohmann::json()));
  out.shadow = ShadowCounters::fromRaw(raw.value("shadow", nlohmann::json()));
  return out;
}

RouteFigures RouteFigures::minus(const RouteFigures& earlier) const {
  RouteFigures out;
  out.monolith = monolith.minus(earlier.monolith);
  out.target = target.minus(earlier.target);
  out.shadow = shadow.since(earlier.shadow);
  return out;
}

std::map<std::string, RouteFigures> routeFigures(const Metrics::Totals& totals,
                                                 const ProxyConfig& config,
                                                 const ShadowSink& shadow) {
  std::map<std::string, RouteFigures> out;
  for (const auto& route : config.routes) {
    auto& figures = out[route.name];
    figures.shadow = shadow.counters(route.name);
    if (const auto eligible = totals.shadow_eligible.find(route.name);
        eligible != totals.shadow_eligible.end())
      figures.shadow.eligible = eligible->second;
  }
  for (const auto& [key, series] : totals.series) {
    const auto& [route_name, upstream] = key;
    const auto* route = config.findRoute(route_name);
    if (route == nullptr) continue;
    auto& figures = out[route_name];
    if (!route->target.empty() && upstream == route->target &&
        upstream != config.default_upstream) {
      figures.target.add(series);
    } else {
      figures.monolith.add(series);
    }
  }
  return out;
}

void StepTracker::onPublish(const ProxyConfig& config,
                            const std::map<std::string, RouteFigures>& now) {
  const int64_t now_ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                             std::chrono::system_clock::now().time_since_epoch())
                             .count();
  std::lock_guard lock(mutex_);
  std::map<std::string, Baseline> next;
  for (const auto& route : config.routes) {
    const int percent = route.stage == Stage::kCanary ? route.percent : 0;
    const auto it = baselines_.find(route.name);
    if (it != baselines_.end() && it->second.stage == route.stage &&
        it->second.percent == percent && it->second.target == route.target) {
      next[route.name] = it->second;  // same step: its figures keep accumulating
      continue;
    }
    Baseline baseline{route.stage, percent, route.target, {}, now_ms};
    if (const auto f = now.find(route.name); f != now.end()) baseline.figures = f->second;
    next[route.name] = baseline;
  }
  baselines_ = std::move(next);
}

std::pair<RouteFigures, int64_t> StepTracker::sinceStep(
    const std::string& route, const std::map<std::string, RouteFigures>& now) const {
  std::lock_guard lock(mutex_);
  const auto f = now.find(route);
  const RouteFigures current = f == now.end() ? RouteFigures{} : f->second;
  const auto it = baselines_.find(route);
  if (it == baselines_.end()) return {current, 0};
  return {current.minus(it->second.figures), it->second.since_ms};
}

}  // namespace strangler::proxy
