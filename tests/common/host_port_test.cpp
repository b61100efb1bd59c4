#include "strangler/common/host_port.h"

#include <gtest/gtest.h>

namespace strangler::common {
namespace {

TEST(HostPortTest, ParsesIpv4AndPort) {
  auto parsed = parseHostPort("127.0.0.1:8080");
  ASSERT_TRUE(parsed.ok()) << parsed.error().message;
  EXPECT_EQ(parsed->host, "127.0.0.1");
  EXPECT_EQ(parsed->port, 8080);
  EXPECT_EQ(parsed->toString(), "127.0.0.1:8080");
}

TEST(HostPortTest, ParsesBracketedIpv6) {
  auto parsed = parseHostPort("[::1]:0");
  ASSERT_TRUE(parsed.ok());
  EXPECT_EQ(parsed->host, "::1");
  EXPECT_EQ(parsed->port, 0);
  EXPECT_EQ(parsed->toString(), "[::1]:0");
}

TEST(HostPortTest, RejectsMissingOrBadPort) {
  EXPECT_FALSE(parseHostPort("127.0.0.1").ok());
  EXPECT_FALSE(parseHostPort("127.0.0.1:").ok());
  EXPECT_FALSE(parseHostPort("127.0.0.1:70000").ok());
  EXPECT_FALSE(parseHostPort("127.0.0.1:80x").ok());
  EXPECT_FALSE(parseHostPort(":80").ok());
  EXPECT_FALSE(parseHostPort("::1:80").ok());
}

TEST(HostPortTest, KnowsLoopbackHosts) {
  EXPECT_TRUE(isLoopbackHost("127.0.0.1"));
  EXPECT_TRUE(isLoopbackHost("127.5.5.5"));
  EXPECT_TRUE(isLoopbackHost("::1"));
  EXPECT_TRUE(isLoopbackHost("localhost"));
  EXPECT_FALSE(isLoopbackHost("0.0.0.0"));
  EXPECT_FALSE(isLoopbackHost("10.0.0.1"));
  EXPECT_FALSE(isLoopbackHost("127.0.0.1.example.com"))
      << "a name, not an address: resolves anywhere";
  EXPECT_FALSE(isLoopbackHost("127.attacker.example"));
}

}  // namespace
}  // namespace strangler::common
