#pragma once

// The proxy config the request path is fuzzed with (fuzz/request_path_fuzzer.cpp) and replayed
// against a second parser with (tests/strangler-proxy/llhttp_conformance_test.cpp).

#include <string>

#include <nlohmann/json.hpp>

namespace strangler::fuzz {

/// Every route's upstream is `upstream` ("HOST:PORT"). Small limits, so a few KiB of input reach
/// every branch: bodies kept whole or streamed (past a route's shadow.max_body_bytes), 413, 431,
/// fallback, rewrite, X-Forwarded-* from a trusted peer, and with `shadow_route` a shadow copy.
/// With `h2_upstream` ("HOST:PORT"), /g/** goes there over HTTP/2 ("protocol": "h2").
inline nlohmann::json requestPathConfig(const std::string& upstream, bool shadow_route,
                                        const std::string& h2_upstream = "") {
  const nlohmann::json endpoint = {
      {"endpoints", {upstream}}, {"timeout_ms", 1000}, {"connect_timeout_ms", 500}};
  nlohmann::json routes = {{{"name", "moved"},
                            {"match", {{"path", "/m/**"}, {"methods", {"GET", "POST", "PUT"}}}},
                            {"target", "service"},
                            {"stage", "extracted"},
                            {"fallback", true},
                            {"rewrite", {{"prefix", "/m"}, {"to", "/v2"}}}},
                           {{"name", "streamed"},
                            {"match", {{"path", "/big/**"}}},
                            {"target", "service"},
                            {"stage", "canary"},
                            {"percent", 50},
                            {"max_body_bytes", 0},
                            {"shadow", {{"max_body_bytes", 64}}}}};
  if (shadow_route) {
    routes.push_back({{"name", "shadowed"},
                      {"match", {{"path", "/s/**"}}},
                      {"target", "service"},
                      {"stage", "shadow"},
                      {"shadow", {{"unsafe_methods", true}, {"max_body_bytes", 256}}}});
  }
  nlohmann::json upstreams = {{"monolith", endpoint}, {"service", endpoint}};
  if (!h2_upstream.empty()) {
    upstreams["grpc"] = {{"endpoints", {h2_upstream}},
                         {"timeout_ms", 1000},
                         {"connect_timeout_ms", 500},
                         {"protocol", "h2"}};
    routes.push_back({{"name", "grpc"},
                      {"match", {{"path", "/g/**"}}},
                      {"target", "grpc"},
                      {"stage", "extracted"}});
  }
  return {{"listen", "127.0.0.1:0"},
          {"trusted_proxies", {"127.0.0.1"}},
          {"upstreams", upstreams},
          {"default_upstream", "monolith"},
          {"limits",
           {{"max_header_bytes", 2048},
            {"max_body_bytes", 4096},
            {"header_timeout_ms", 1000},
            {"idle_timeout_ms", 1000}}},
          {"routes", routes}};
}

}  // namespace strangler::fuzz
