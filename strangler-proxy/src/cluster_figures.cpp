// The figures of every replica, summed: what GET /routes, `routes advance` and the canary guard
// judge when several replicas share an etcd config.
#include <algorithm>

#include "strangler/proxy/config_file.h"
#include "strangler/proxy/proxy_app.h"
#include "strangler/proxy/replica_set.h"

namespace strangler::proxy {
namespace {

using nlohmann::json;

// How long a replica's GET /figures may take before it is left out (and said so).
constexpr auto kFetchTimeout = std::chrono::milliseconds(1000);

// One replica's figures of a route's step, as shown beside the sums.
json aloneJson(const RouteFigures& step, const std::string& stage, int percent) {
  return {{"stage", stage},
          {"percent", percent},
          {"sides", {{"monolith", step.monolith.toJson()}, {"target", step.target.toJson()}}},
          {"shadow", step.shadow.toJson()}};
}

}  // namespace

json ProxyApp::figuresDocument() {
  const auto runtime = current();
  const auto now = figures();
  json routes = json::object();
  for (const auto& route : runtime->config->routes) {
    const auto [step, since_ms] = steps_.sinceStep(route.name, now);
    routes[route.name] = {{"stage", stageName(route.stage)},
                          {"percent", stepPercent(route)},
                          {"target", route.target},
                          {"since_ms", since_ms},
                          {"step", step.toRaw()}};
  }
  return {{"replica", replicas_ ? replicas_->id() : std::string("local")},
          {"version", runtime->version},
          {"config_revision", configSource().mod_revision},
          {"config_hash", runtime->config->hash},
          {"routes", routes}};
}

ClusterFigures ProxyApp::clusterFigures(const std::map<std::string, RouteFigures>& now,
                                        bool across_replicas) {
  ClusterFigures out;
  const auto runtime = current();
  const std::string self = replicas_ ? replicas_->id() : std::string("local");
  json self_alone = {{"id", self},
                     {"self", true},
                     {"answered", true},
                     {"version", runtime->version},
                     {"config_revision", configSource().mod_revision},
                     {"routes", json::object()}};
  for (const auto& route : runtime->config->routes) {
    const auto [step, since_ms] = steps_.sinceStep(route.name, now);
    out.routes[route.name] = ClusterRoute{step, since_ms, {self}, json::array()};
    self_alone["routes"][route.name] = aloneJson(step, stageName(route.stage), stepPercent(route));
  }
  out.replicas.push_back(self_alone);
  if (!replicas_ || !across_replicas) return out;
  out.across_replicas = true;
  for (const auto& other : replicas_->fetchOthers(kFetchTimeout)) {
    json alone = {{"id", other.id},
                  {"admin", other.admin},
                  {"answered", other.answered},
                  {"registered_at", other.updated_at}};
    if (other.answered) alone["answered_at"] = nowIso8601();
    if (!other.answered) {
      alone["error"] = other.error;
      for (auto& [name, route] : out.routes)
        route.not_counted.push_back({{"replica", other.id}, {"reason", other.error}});
      out.replicas.push_back(alone);
      continue;
    }
    alone["version"] = other.figures.value("version", 0);
    alone["config_revision"] = other.figures.value("config_revision", 0);
    alone["routes"] = json::object();
    const json theirs = other.figures.value("routes", json::object());
    for (const auto& route : runtime->config->routes) {
      auto& summed = out.routes[route.name];
      const auto it = theirs.find(route.name);
      if (it == theirs.end() || !it->is_object()) {
        summed.not_counted.push_back(
            {{"replica", other.id}, {"reason", "does not serve this route (another config)"}});
        continue;
      }
      const RouteFigures step = RouteFigures::fromRaw(it->value("step", json()));
      alone["routes"][route.name] =
          aloneJson(step, it->value("stage", std::string()), it->value("percent", 0));
      // Figures of another step (a replica that has not applied the latest config yet) say
      // nothing about this one.
      if (it->value("stage", "") != stageName(route.stage) ||
          it->value("percent", -1) != stepPercent(route) ||
          it->value("target", "") != route.target) {
        summed.not_counted.push_back(
            {{"replica", other.id},
             {"reason", "on another step (" + it->value("stage", std::string("?")) + " " +
                            std::to_string(it->value("percent", 0)) + "%)"}});
        continue;
      }
      summed.step.add(step);
      summed.counted.push_back(other.id);
      const int64_t since = it->value("since_ms", int64_t{0});
      if (since != 0 && (summed.since_ms == 0 || since < summed.since_ms)) summed.since_ms = since;
    }
    out.replicas.push_back(alone);
  }
  return out;
}

}  // namespace strangler::proxy
