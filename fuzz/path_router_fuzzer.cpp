// libFuzzer: request targets through the path normalizer and the router. Checks that a
// normalized path is canonical (no empty, "." or ".." segments, normalizing it again changes
// nothing) and that the route trie picks exactly what the reference matcher picks.
#include <fuzzer/FuzzedDataProvider.h>

#include <cstdio>
#include <cstdlib>

#include <nlohmann/json.hpp>

#include "route_reference.h"
#include "strangler/proxy/path_normalizer.h"
#include "strangler/proxy/router.h"

namespace {

using strangler::proxy::ProxyConfig;

[[noreturn]] void fail(const std::string& what, std::string_view input) {
  std::fprintf(stderr, "%s (input: %.*s)\n", what.c_str(), static_cast<int>(input.size()),
               input.data());
  std::abort();
}

const ProxyConfig& config() {
  static const ProxyConfig kConfig = [] {
    auto created = ProxyConfig::create(nlohmann::json::parse(R"({
      "listen": "127.0.0.1:0",
      "upstreams": {
        "monolith": {"endpoints": ["127.0.0.1:1"]}, "private": {"endpoints": ["127.0.0.1:2"]},
        "public": {"endpoints": ["127.0.0.1:3"]}, "drivers": {"endpoints": ["127.0.0.1:4"]}
      },
      "default_upstream": "monolith",
      "routes": [
        {"name": "private", "match": {"path": "/admin-private/**"}, "target": "private",
         "stage": "extracted"},
        {"name": "public", "match": {"path": "/public/**"}, "target": "public",
         "stage": "extracted", "fallback": true},
        {"name": "drivers", "match": {"path": "/api/drivers/**", "methods": ["GET", "PUT"]},
         "target": "drivers", "stage": "canary", "percent": 30,
         "sticky": {"header": "X-User-Id"}, "cohort": "riders"},
        {"name": "driver", "match": {"path": "/api/drivers/{id}"}, "target": "drivers",
         "stage": "shadow", "rewrite": {"prefix": "/api/drivers", "to": "/v2/drivers"}},
        {"name": "location", "match": {"path": "/api/drivers/{id}/location", "methods": ["PUT"]},
         "target": "drivers", "stage": "extracted", "fallback": true},
        {"name": "nearby", "match": {"path": "/api/drivers/nearby"}, "target": "drivers",
         "stage": "extracted"},
        {"name": "trip", "match": {"path": "/api/trips/{id}/{part}"}, "target": "drivers",
         "stage": "canary", "percent": 50, "sticky": {"cookie": "uid"}},
        {"name": "trips", "match": {"path": "/api/trips"}, "stage": "monolith"},
        {"name": "root", "match": {"path": "/"}, "stage": "monolith"}
      ]})"));
    if (!created) {
      std::fprintf(stderr, "%s\n", created.error().message.c_str());
      std::abort();
    }
    return std::move(created).value();
  }();
  return kConfig;
}

void checkCanonical(const std::string& path, std::string_view input) {
  if (path.empty() || path.front() != '/') fail("normalized path does not start with '/'", input);
  if (path.find("//") != std::string::npos) fail("normalized path has an empty segment", input);
  for (const auto segment : strangler::fuzz::pathSegments(path)) {
    if (segment == "." || segment == "..") fail("normalized path keeps a dot segment", input);
  }
  if (path.find('\\') != std::string::npos) fail("normalized path has a backslash", input);
  const auto again = strangler::proxy::normalizeTarget(path);
  if (!again) fail("a normalized path does not normalize: " + again.error().message, input);
  if (again->path != path) fail("normalizing twice changed " + path + " to " + again->path, input);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const strangler::proxy::Router router(config());
  static const strangler::proxy::RouteTable table(config().routes);
  FuzzedDataProvider provider(data, size);
  static constexpr const char* kMethods[] = {"GET",   "HEAD",    "POST",  "PUT",  "DELETE",
                                             "PATCH", "OPTIONS", "TRACE", "BREW", ""};
  const std::string method = provider.PickValueInArray(kMethods);
  const std::string user = provider.ConsumeRandomLengthString(32);
  const uint64_t random = provider.ConsumeIntegral<uint64_t>();
  const std::string target = provider.ConsumeRemainingBytesAsString();

  const auto normalized = strangler::proxy::normalizeTarget(target);
  if (!normalized) return 0;
  checkCanonical(normalized->path, target);
  if (normalized->has_query != (target.find('?') != std::string::npos))
    fail("query split wrongly", target);

  const int expected = strangler::fuzz::referenceMatch(config().routes, method, normalized->path);
  const int matched = table.match(method, normalized->path);
  if (matched != expected) {
    fail("trie picked route " + std::to_string(matched) + ", reference " +
             std::to_string(expected) + " for " + method + " " + normalized->path,
         target);
  }
  const strangler::proxy::HeaderList headers = {{"X-User-Id", user}, {"Cookie", "uid=" + user}};
  const auto decision =
      router.decide({.method = method, .path = normalized->path, .headers = &headers}, random);
  if (decision.route_index != matched) fail("router and route table disagree", target);
  if (decision.upstream.empty()) fail("no upstream decided", target);
  if (decision.path.empty() || decision.path.front() != '/') fail("bad forwarded path", target);
  if (decision.route == nullptr && decision.upstream != "monolith")
    fail("unmatched request not sent to default_upstream", target);
  return 0;
}
