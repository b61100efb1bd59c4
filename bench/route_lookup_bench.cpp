// Route lookup cost at 10 and 10,000 routes: the trie keeps it flat (goal: under 1 µs).
#include <benchmark/benchmark.h>

#include <string>
#include <vector>

#include "strangler/proxy/path_normalizer.h"
#include "strangler/proxy/route_table.h"
#include "strangler/proxy/router.h"

namespace {

using strangler::proxy::RouteConfig;

// A realistic mix: exact paths, templates and subtrees under many services.
std::vector<RouteConfig> makeRoutes(int count) {
  std::vector<RouteConfig> routes;
  for (int i = 0; routes.size() < static_cast<size_t>(count); ++i) {
    const std::string service = "/api/svc" + std::to_string(i);
    for (const char* suffix : {"/items", "/items/{id}", "/items/{id}/history", "/admin/**"}) {
      if (routes.size() == static_cast<size_t>(count)) break;
      RouteConfig route;
      route.name = "r" + std::to_string(routes.size());
      route.path = service + suffix;
      routes.push_back(route);
    }
  }
  return routes;
}

void BM_RouteLookup(benchmark::State& state) {
  const auto routes = makeRoutes(static_cast<int>(state.range(0)));
  const strangler::proxy::RouteTable table(routes);
  const int services = static_cast<int>(state.range(0)) / 4;
  std::vector<std::string> paths;
  for (int i = 0; i < 64; ++i) {
    const int service = (i * 7919) % std::max(services, 1);
    paths.push_back("/api/svc" + std::to_string(service) +
                    (i % 2 ? "/items/42/history" : "/admin/a/b"));
  }
  size_t i = 0;
  for (auto _ : state) {
    benchmark::DoNotOptimize(table.match("GET", paths[i++ & 63]));
  }
}
BENCHMARK(BM_RouteLookup)->Arg(10)->Arg(10000);

// The whole decision as the data path makes it: normalize the target, then route.
void BM_NormalizeAndDecide(benchmark::State& state) {
  strangler::proxy::ProxyConfig config = [] {
    auto parsed = strangler::proxy::ProxyConfig::parse(R"({
      "upstreams": {"monolith": {"endpoints": ["127.0.0.1:1"]}, "svc": {"endpoints": ["127.0.0.1:2"]}},
      "default_upstream": "monolith"})");
    return std::move(parsed).value();
  }();
  config.routes = makeRoutes(static_cast<int>(state.range(0)));
  for (auto& route : config.routes) {
    route.target = "svc";
    route.stage = strangler::proxy::Stage::kCanary;
    route.percent = 30;
    route.sticky = strangler::proxy::StickyConfig{"X-User-Id", ""};
  }
  const strangler::proxy::Router router(config);
  const strangler::proxy::HeaderList headers = {{"Host", "a"}, {"X-User-Id", "12345"}};
  uint64_t random = 1;
  for (auto _ : state) {
    auto target = strangler::proxy::normalizeTarget("/api/svc1//items/./42/history?x=1");
    auto decision = router.decide({"GET", target->path, &headers}, ++random);
    benchmark::DoNotOptimize(decision);
  }
}
BENCHMARK(BM_NormalizeAndDecide)->Arg(10)->Arg(10000);

}  // namespace

BENCHMARK_MAIN();
