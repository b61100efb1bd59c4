// Endpoints given by host name are resolved again every resolve_ms (UpstreamRegistry), with a
// resolver the test controls: DNS answers cannot be changed on a test machine.
#include "strangler/proxy/runtime.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>

#include <cstring>

namespace strangler::proxy {
namespace {

using namespace std::chrono_literals;

uint32_t ipv4Of(const EndpointState& state) {
  sockaddr_in v4{};
  std::memcpy(&v4, &state.sockaddr, sizeof v4);
  return ntohl(v4.sin_addr.s_addr);
}

TEST(UpstreamRegistryTest, NamedEndpointsAreResolvedAgainAfterResolveMs) {
  auto config = ProxyConfig::parse(R"({
    "listen": "127.0.0.1:0", "admin": {"listen": "127.0.0.1:0"},
    "upstreams": {"monolith": {"endpoints": ["svc.internal:8080", "127.0.0.7:9000"],
                               "resolve_ms": 1000}},
    "default_upstream": "monolith", "routes": []})");
  ASSERT_TRUE(config.ok()) << config.error().message;
  const auto shared = std::make_shared<const ProxyConfig>(*config);
  UpstreamRegistry registry;
  uint32_t answer = 0x7f000001;  // 0: the resolver fails
  int named_lookups = 0;
  registry.setResolver([&](const common::HostPort& address, sockaddr_storage& out,
                           socklen_t& length, std::string& error) {
    sockaddr_in v4{};
    v4.sin_family = AF_INET;
    v4.sin_port = htons(address.port);
    if (address.host == "127.0.0.7") {
      inet_pton(AF_INET, "127.0.0.7", &v4.sin_addr);
    } else {
      ++named_lookups;
      if (answer == 0) {
        error = "temporary failure in name resolution";
        return false;
      }
      v4.sin_addr.s_addr = htonl(answer);
    }
    std::memcpy(&out, &v4, sizeof v4);
    length = sizeof v4;
    return true;
  });
  auto holds = std::make_shared<RouteHolds>(1);
  const auto t0 = std::chrono::steady_clock::now();
  auto first = registry.build(shared, 1, holds);
  ASSERT_TRUE(first.ok()) << first.error().message;
  const auto named = (*first)->upstream("monolith")->endpoints[0];
  const auto literal = (*first)->upstream("monolith")->endpoints[1];
  EXPECT_EQ(ipv4Of(*named), 0x7f000001u);
  EXPECT_EQ(named_lookups, 1);

  answer = 0x7f000002;
  EXPECT_TRUE(registry.reresolve(*shared, t0 + 200ms).empty()) << "before resolve_ms";
  EXPECT_EQ(named_lookups, 1);
  EXPECT_EQ(registry.reresolve(*shared, t0 + 2s), std::vector<std::string>{"svc.internal:8080"});
  auto second = registry.build(shared, 2, holds);
  ASSERT_TRUE(second.ok());
  const auto moved = (*second)->upstream("monolith")->endpoints[0];
  EXPECT_EQ(ipv4Of(*moved), 0x7f000002u);
  EXPECT_NE(moved->pool_key, named->pool_key) << "kept-alive connections to the old address";
  EXPECT_EQ(moved->key, "svc.internal:8080");
  EXPECT_EQ((*second)->upstream("monolith")->endpoints[1], literal) << "literals never change";

  // A resolver failing keeps the last address; the same answer again changes nothing.
  answer = 0;
  EXPECT_TRUE(registry.reresolve(*shared, t0 + 4s).empty());
  answer = 0x7f000002;
  EXPECT_TRUE(registry.reresolve(*shared, t0 + 6s).empty());
  auto third = registry.build(shared, 3, holds);
  ASSERT_TRUE(third.ok());
  EXPECT_EQ((*third)->upstream("monolith")->endpoints[0], moved);
  EXPECT_EQ(named_lookups, 4);
}

TEST(UpstreamRegistryTest, ResolveMsZeroResolvesOnlyOnBuild) {
  auto config = ProxyConfig::parse(R"({
    "listen": "127.0.0.1:0", "admin": {"listen": "127.0.0.1:0"},
    "upstreams": {"monolith": {"endpoints": ["svc.internal:8080"], "resolve_ms": 0}},
    "default_upstream": "monolith", "routes": []})");
  ASSERT_TRUE(config.ok());
  const auto shared = std::make_shared<const ProxyConfig>(*config);
  UpstreamRegistry registry;
  int lookups = 0;
  registry.setResolver(
      [&](const common::HostPort&, sockaddr_storage& out, socklen_t& length, std::string&) {
        ++lookups;
        sockaddr_in v4{};
        v4.sin_family = AF_INET;
        v4.sin_addr.s_addr = htonl(0x7f000000u + static_cast<uint32_t>(lookups));
        std::memcpy(&out, &v4, sizeof v4);
        length = sizeof v4;
        return true;
      });
  ASSERT_TRUE(registry.build(shared, 1, std::make_shared<RouteHolds>(1)).ok());
  EXPECT_TRUE(registry.reresolve(*shared, std::chrono::steady_clock::now() + 1h).empty());
  EXPECT_EQ(lookups, 1);
}

}  // namespace
}  // namespace strangler::proxy
