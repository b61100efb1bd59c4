#include "strangler/proxy/router.h"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

namespace strangler::proxy {
namespace {

ProxyConfig makeConfig(int percent, const std::string& extra_routes = "") {
  auto text = R"({
    "upstreams": {
      "monolith": { "endpoints": ["127.0.0.1:8081"] },
      "drivers":  { "endpoints": ["127.0.0.1:8082"] },
      "trips":    { "endpoints": ["127.0.0.1:8083"] }
    },
    "default_upstream": "monolith",
    "routes": [
      { "name": "drivers", "match": { "path": "/api/drivers/**" }, "target": "drivers",
        "stage": "canary", "percent": PERCENT, "sticky": { "header": "X-User-Id" }, "fallback": true,
        "rewrite": { "prefix": "/api/drivers", "to": "/v2/drivers" } },
      { "name": "trips", "match": { "path": "/api/trips/**" }, "target": "trips",
        "stage": "canary", "percent": PERCENT, "sticky": { "cookie": "uid" }, "cohort": "riders" },
      { "name": "invoices", "match": { "path": "/api/invoices/**" }, "target": "trips",
        "stage": "canary", "percent": PERCENT, "sticky": { "cookie": "uid" }, "cohort": "riders" },
      { "name": "legacy", "match": { "path": "/api/legacy" }, "target": "drivers", "stage": "monolith" },
      { "name": "shadowed", "match": { "path": "/api/shadowed" }, "target": "drivers", "stage": "shadow" },
      { "name": "moved", "match": { "path": "/api/moved/**" }, "target": "drivers",
        "stage": "extracted", "fallback": true } EXTRA
    ]
  })";
  std::string json(text);
  for (size_t at; (at = json.find("PERCENT")) != std::string::npos;)
    json.replace(at, 7, std::to_string(percent));
  json.replace(json.find("EXTRA"), 5, extra_routes);
  auto config = ProxyConfig::parse(json);
  EXPECT_TRUE(config.ok()) << (config.ok() ? "" : config.error().message);
  return std::move(config).value();
}

class RouterTest : public ::testing::Test {
 protected:
  Decision decide(const ProxyConfig& config, const std::string& method, const std::string& path,
                  HeaderList headers = {}, uint64_t random = 0) {
    Router router(config);
    return router.decide(RequestView{method, path, &headers}, random);
  }
};

TEST_F(RouterTest, UnmatchedRequestsGoToTheDefaultUpstream) {
  auto config = makeConfig(50);
  const auto decision = decide(config, "GET", "/somewhere");
  EXPECT_EQ(decision.route, nullptr);
  EXPECT_EQ(decision.upstream, "monolith");
  EXPECT_EQ(decision.path, "/somewhere");
}

TEST_F(RouterTest, MonolithStageIgnoresTheTarget) {
  auto config = makeConfig(50);
  const auto decision = decide(config, "GET", "/api/legacy");
  EXPECT_EQ(decision.route->name, "legacy");
  EXPECT_EQ(decision.upstream, "monolith");
  EXPECT_FALSE(decision.to_target);
}

TEST_F(RouterTest, ShadowStageServesFromTheMonolithAndAsksForACopy) {
  auto config = makeConfig(50);
  auto decision = decide(config, "GET", "/api/shadowed");
  EXPECT_EQ(decision.upstream, "monolith");
  EXPECT_TRUE(decision.shadow);
  decision = decide(config, "POST", "/api/shadowed");
  EXPECT_FALSE(decision.shadow);
}

TEST_F(RouterTest, ExtractedGoesToTheTargetWithFallbackForIdempotentMethods) {
  auto config = makeConfig(50);
  auto decision = decide(config, "GET", "/api/moved/1");
  EXPECT_EQ(decision.upstream, "drivers");
  EXPECT_EQ(decision.fallback_upstream, "monolith");
  EXPECT_EQ(decision.fallback_path, "/api/moved/1");
  decision = decide(config, "POST", "/api/moved/1");
  EXPECT_EQ(decision.upstream, "drivers");
  EXPECT_EQ(decision.fallback_upstream, "");
}

TEST_F(RouterTest, RewritesThePrefixOnlyForTheTarget) {
  auto config = makeConfig(99);
  for (int user = 0; user < 200; ++user) {
    const auto decision =
        decide(config, "GET", "/api/drivers/7", {{"x-user-id", std::to_string(user)}});
    if (decision.to_target) {
      EXPECT_EQ(decision.path, "/v2/drivers/7");
      EXPECT_EQ(decision.fallback_path, "/api/drivers/7");
    } else {
      EXPECT_EQ(decision.path, "/api/drivers/7");
    }
  }
}

TEST_F(RouterTest, CanarySplitsRoughlyByPercent) {
  auto config = makeConfig(25);
  int to_target = 0;
  for (int user = 0; user < 4000; ++user) {
    to_target +=
        decide(config, "GET", "/api/drivers/1", {{"X-User-Id", "u" + std::to_string(user)}})
            .to_target;
  }
  EXPECT_GT(to_target, 800);
  EXPECT_LT(to_target, 1200);
}

TEST_F(RouterTest, CanaryKeepsKeyOnSameSide) {
  auto config = makeConfig(40);
  for (int user = 0; user < 100; ++user) {
    const HeaderList headers = {{"X-User-Id", std::to_string(user)}};
    const bool first = decide(config, "GET", "/api/drivers/1", headers, 1).to_target;
    for (uint64_t random = 2; random < 10; ++random) {
      EXPECT_EQ(decide(config, "GET", "/api/drivers/9", headers, random * 7919).to_target, first);
    }
  }
}

TEST_F(RouterTest, CanaryKeepsKeyOnSameSideWhenPercentRises) {
  std::vector<ProxyConfig> configs;
  for (int percent = 1; percent <= 99; ++percent)
    configs.push_back(makeConfig(percent));
  for (int user = 0; user < 300; ++user) {
    const HeaderList headers = {{"X-User-Id", "user-" + std::to_string(user)}};
    bool was_target = false;
    for (const auto& config : configs) {
      const bool now_target = decide(config, "GET", "/api/drivers/1", headers).to_target;
      EXPECT_FALSE(was_target && !now_target)
          << "user " << user << " flipped back at " << config.routes[0].percent;
      was_target = now_target;
    }
  }
}

TEST_F(RouterTest, CohortRoutesBucketAKeyTheSameWay) {
  auto config = makeConfig(50);
  int agreements = 0;
  for (int user = 0; user < 200; ++user) {
    const HeaderList headers = {{"Cookie", "theme=dark; uid=" + std::to_string(user)}};
    const auto trip = decide(config, "GET", "/api/trips/1", headers);
    const auto invoice = decide(config, "GET", "/api/invoices/1", headers);
    EXPECT_EQ(trip.bucket, invoice.bucket);
    agreements += trip.to_target == invoice.to_target;
  }
  EXPECT_EQ(agreements, 200);
}

TEST_F(RouterTest, RoutesOutsideACohortBucketIndependently) {
  EXPECT_NE(canaryBucket("drivers", "42") == canaryBucket("riders", "42") &&
                canaryBucket("drivers", "43") == canaryBucket("riders", "43") &&
                canaryBucket("drivers", "44") == canaryBucket("riders", "44"),
            true);
}

TEST_F(RouterTest, CanaryWithoutKeyUsesTheRandomValue) {
  auto config = makeConfig(30);
  EXPECT_TRUE(decide(config, "GET", "/api/drivers/1", {}, 2999).to_target);
  EXPECT_FALSE(decide(config, "GET", "/api/drivers/1", {}, 3000).to_target);
}

// Routes that name a sync mapping ("data"): writes follow the data's owner.
ProxyConfig dataConfig(const std::string& stage, const std::string& extra = "") {
  std::string text = R"({
    "upstreams": {
      "monolith": { "endpoints": ["127.0.0.1:8081"] },
      "drivers":  { "endpoints": ["127.0.0.1:8082"] }
    },
    "default_upstream": "monolith",
    "routes": [
      { "name": "drivers", "match": { "path": "/api/drivers/**" }, "target": "drivers",
        "stage": "STAGE", "data": "drivers", "fallback": true,
        "rewrite": { "prefix": "/api/drivers", "to": "/v2/drivers" } EXTRA },
      { "name": "trips", "match": { "path": "/api/trips/**" }, "target": "drivers",
        "stage": "STAGE", "fallback": true EXTRA }
    ]
  })";
  for (size_t at; (at = text.find("STAGE")) != std::string::npos;)
    text.replace(at, 5, stage);
  for (size_t at; (at = text.find("EXTRA")) != std::string::npos;)
    text.replace(at, 5, extra);
  auto config = ProxyConfig::parse(text);
  EXPECT_TRUE(config.ok()) << (config.ok() ? "" : config.error().message);
  return std::move(config).value();
}

const std::vector<std::string> kUnsafeMethods = {"POST", "PUT", "PATCH", "DELETE"};

TEST_F(RouterTest, SafeMethodsAreExactlyGetHeadAndOptions) {
  for (const char* method : {"GET", "HEAD", "OPTIONS"})
    EXPECT_TRUE(isSafe(method)) << method;
  for (const char* method : {"POST", "PUT", "PATCH", "DELETE", "TRACE", "CONNECT", "get"})
    EXPECT_FALSE(isSafe(method)) << method;
}

TEST_F(RouterTest, CanaryOnADataRouteSendsWritesToTheMonolithAndSplitsReads) {
  const auto config = dataConfig("canary", R"(, "percent": 50)");
  int reads_to_target = 0;
  for (uint64_t random = 0; random < 10000; random += 50) {
    for (const auto& method : kUnsafeMethods) {
      const auto decision = decide(config, method, "/api/drivers/7", {}, random);
      EXPECT_EQ(decision.route->name, "drivers");
      EXPECT_FALSE(decision.to_target) << method << " random " << random;
      EXPECT_EQ(decision.upstream, "monolith");
      EXPECT_EQ(decision.path, "/api/drivers/7");
      EXPECT_STREQ(decision.reason, "data_owner");
    }
    for (const char* method : {"GET", "HEAD", "OPTIONS"}) {
      const auto decision = decide(config, method, "/api/drivers/7", {}, random);
      EXPECT_EQ(decision.to_target, random < 5000) << method << " random " << random;
      reads_to_target += decision.to_target;
    }
  }
  EXPECT_EQ(reads_to_target, 3 * 100);
  // A route without data still splits its writes.
  EXPECT_TRUE(decide(config, "PUT", "/api/trips/7", {}, 10).to_target);
  EXPECT_FALSE(decide(config, "PUT", "/api/trips/7", {}, 9000).to_target);
}

TEST_F(RouterTest, CanaryOnADataRouteKeepsWritesOnTheMonolithWhateverTheStickyKey) {
  const auto config = dataConfig("canary", R"(, "percent": 99, "sticky": {"header": "X-User-Id"})");
  for (int user = 0; user < 100; ++user) {
    const HeaderList headers = {{"X-User-Id", std::to_string(user)}};
    EXPECT_EQ(decide(config, "PUT", "/api/drivers/1", headers).upstream, "monolith");
  }
}

TEST_F(RouterTest, ExtractedDataRouteSendsWritesToTheTargetWithoutFallback) {
  const auto config = dataConfig("extracted");
  for (const auto& method : kUnsafeMethods) {
    const auto decision = decide(config, method, "/api/drivers/7");
    EXPECT_TRUE(decision.to_target) << method;
    EXPECT_EQ(decision.upstream, "drivers");
    EXPECT_EQ(decision.path, "/v2/drivers/7");
    // The monolith no longer owns the data: a write must not be retried there.
    EXPECT_EQ(decision.fallback_upstream, "") << method;
  }
  const auto read = decide(config, "GET", "/api/drivers/7");
  EXPECT_EQ(read.upstream, "drivers");
  EXPECT_EQ(read.fallback_upstream, "monolith");
  // Without data, an idempotent write still falls back as before.
  EXPECT_EQ(decide(config, "PUT", "/api/trips/7").fallback_upstream, "monolith");
}

TEST_F(RouterTest, MonolithAndShadowDataRoutesSendWritesToTheMonolith) {
  for (const char* stage : {"monolith", "shadow"}) {
    const auto config = dataConfig(stage);
    for (const auto& method : kUnsafeMethods) {
      const auto decision = decide(config, method, "/api/drivers/7");
      EXPECT_EQ(decision.upstream, "monolith") << stage << " " << method;
      EXPECT_FALSE(decision.to_target);
    }
  }
}

TEST_F(RouterTest, ShadowNeverCopiesWritesOfADataRouteEvenWhenUnsafeMethodsAreAllowed) {
  const auto config = dataConfig("shadow", R"(, "shadow": {"unsafe_methods": true})");
  for (const auto& method : kUnsafeMethods) {
    EXPECT_FALSE(decide(config, method, "/api/drivers/7").shadow) << method;
    // The same settings without data copy every method.
    EXPECT_TRUE(decide(config, method, "/api/trips/7").shadow) << method;
  }
  const auto read = decide(config, "GET", "/api/drivers/7");
  EXPECT_TRUE(read.shadow);
  EXPECT_EQ(read.shadow_path, "/v2/drivers/7");
  // Default shadow settings: a data route's writes are not copied either.
  const auto plain = dataConfig("shadow");
  EXPECT_FALSE(decide(plain, "PUT", "/api/drivers/7").shadow);
  EXPECT_FALSE(decide(plain, "DELETE", "/api/drivers/7").shadow);
  EXPECT_TRUE(decide(plain, "HEAD", "/api/drivers/7").shadow);
}

TEST(CookieTest, FindsCookiesAmongOthers) {
  const HeaderList headers = {{"Cookie", "a=1; uid=\"77\" ;b=2"}, {"cookie", "c=3"}};
  EXPECT_EQ(findCookie(headers, "uid").value(), "77");
  EXPECT_EQ(findCookie(headers, "c").value(), "3");
  EXPECT_FALSE(findCookie(headers, "d").has_value());
  EXPECT_FALSE(findCookie(headers, "ui").has_value());
}

}  // namespace
}  // namespace strangler::proxy
