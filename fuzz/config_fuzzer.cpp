// libFuzzer: strangler.json text through ProxyConfig::parse. A config that parses must survive
// its own round trip (toJson() is accepted again and reads back the same), and the route trie built
// from its (fuzzed) patterns must pick what the reference matcher picks.
#include <cstdio>
#include <cstdlib>
#include <string>

#include <nlohmann/json.hpp>

#include "route_reference.h"
#include "strangler/proxy/router.h"

namespace {

[[noreturn]] void fail(const std::string& what) {
  std::fprintf(stderr, "%s\n", what.c_str());
  std::abort();
}

// Paths a route's own pattern matches, and near misses: parameters filled in, subtrees
// extended, the last segment dropped.
std::vector<std::string> probePaths(const std::string& pattern) {
  std::string filled;
  for (const auto segment : strangler::fuzz::pathSegments(pattern)) {
    if (segment == "**") break;
    filled += "/";
    filled += segment.front() == '{' ? std::string("v") : std::string(segment);
  }
  if (filled.empty()) filled = "/";
  std::vector<std::string> paths = {filled, filled + "/x", filled + "/x/y"};
  const size_t last = filled.rfind('/');
  paths.push_back(last == 0 ? "/" : filled.substr(0, last));
  return paths;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  auto parsed = strangler::proxy::ProxyConfig::parse(text);
  if (!parsed) {
    if (parsed.error().message.empty()) fail("a refused config with no message");
    return 0;
  }
  const auto& config = parsed.value();
  const auto again = strangler::proxy::ProxyConfig::create(config.toJson());
  if (!again) fail("toJson() of a valid config is refused: " + again.error().message);
  if (again->toJson() != config.toJson()) fail("toJson() is not a fixed point of create()");
  if (again->routes.size() != config.routes.size()) fail("the round trip lost routes");

  const strangler::proxy::RouteTable table(config.routes);
  const strangler::proxy::Router router(config);
  for (const auto& route : config.routes) {
    for (const auto& path : probePaths(route.path)) {
      for (const char* method : {"GET", "POST", "PATCH"}) {
        const int expected = strangler::fuzz::referenceMatch(config.routes, method, path);
        const int matched = table.match(method, path);
        if (matched != expected) {
          fail("trie picked route " + std::to_string(matched) + ", reference " +
               std::to_string(expected) + " for " + method + " " + path);
        }
        const strangler::proxy::HeaderList headers;
        const auto decision = router.decide({.method = method, .path = path, .headers = &headers},
                                            static_cast<uint64_t>(size) * 7919);
        if (decision.route_index != matched) fail("router and route table disagree");
        if (decision.upstream.empty() || !config.upstreams.count(decision.upstream))
          fail("decided an unknown upstream '" + decision.upstream + "'");
      }
    }
  }
  return 0;
}
