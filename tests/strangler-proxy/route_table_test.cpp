#include "strangler/proxy/route_table.h"

#include <chrono>

#include <gtest/gtest.h>

namespace strangler::proxy {
namespace {

RouteConfig route(const std::string& name, const std::string& path,
                  std::vector<std::string> methods = {}) {
  RouteConfig config;
  config.name = name;
  config.path = path;
  config.methods = std::move(methods);
  return config;
}

class RouteTableTest : public ::testing::Test {
 protected:
  std::vector<RouteConfig> routes_ = {
      route("trips", "/api/trips"),                                     // 0
      route("trip", "/api/trips/{id}"),                                 // 1
      route("trip-invoice", "/api/trips/{id}/invoice"),                 // 2
      route("drivers", "/api/drivers/**"),                              // 3
      route("driver-location", "/api/drivers/{id}/location", {"PUT"}),  // 4
      route("nearby", "/api/drivers/nearby", {"GET"}),                  // 5
      route("api", "/api/**"),                                          // 6
      route("root", "/"),                                               // 7
  };
  RouteTable table_{routes_};

  std::string match(const std::string& method, const std::string& path) {
    const int index = table_.match(method, path);
    return index < 0 ? "-" : routes_[static_cast<size_t>(index)].name;
  }
};

TEST_F(RouteTableTest, MatchesExactPaths) {
  EXPECT_EQ(match("GET", "/api/trips"), "trips");
  EXPECT_EQ(match("GET", "/api/trips/"), "trips");
  EXPECT_EQ(match("GET", "/"), "root");
}

TEST_F(RouteTableTest, MatchesTemplateSegments) {
  EXPECT_EQ(match("GET", "/api/trips/42"), "trip");
  EXPECT_EQ(match("POST", "/api/trips/42/invoice"), "trip-invoice");
}

TEST_F(RouteTableTest, SubtreeMatchesItsRootAndEverythingBelow) {
  EXPECT_EQ(match("GET", "/api/drivers"), "drivers");
  EXPECT_EQ(match("GET", "/api/drivers/7"), "drivers");
  EXPECT_EQ(match("DELETE", "/api/drivers/7/a/b/c"), "drivers");
}

TEST_F(RouteTableTest, MostSpecificWins) {
  EXPECT_EQ(match("GET", "/api/drivers/nearby"), "nearby");
  EXPECT_EQ(match("PUT", "/api/drivers/7/location"), "driver-location");
  EXPECT_EQ(match("GET", "/api/payments/1"), "api");
  EXPECT_EQ(match("GET", "/api/trips/42/other"), "api");
}

TEST_F(RouteTableTest, MethodFilterFallsThroughToLessSpecificRoutes) {
  EXPECT_EQ(match("POST", "/api/drivers/nearby"), "drivers");
  EXPECT_EQ(match("GET", "/api/drivers/7/location"), "drivers");
}

TEST_F(RouteTableTest, UnmatchedPathsMatchNothing) {
  EXPECT_EQ(match("GET", "/health"), "-");
  EXPECT_EQ(match("GET", "/apix"), "-");
}

TEST(RouteTableScaleTest, LookupStaysFastWithTenThousandRoutes) {
  std::vector<RouteConfig> routes;
  for (int i = 0; i < 10000; ++i) {
    routes.push_back(route("r" + std::to_string(i), "/svc" + std::to_string(i) + "/items/{id}"));
  }
  RouteTable table(routes);
  const auto start = std::chrono::steady_clock::now();
  int found = 0;
  for (int i = 0; i < 10000; ++i) {
    found += table.match("GET", "/svc" + std::to_string(i) + "/items/5") == i ? 1 : 0;
  }
  const auto elapsed = std::chrono::steady_clock::now() - start;
  EXPECT_EQ(found, 10000);
  EXPECT_LT(elapsed, std::chrono::milliseconds(500));
}

}  // namespace
}  // namespace strangler::proxy
