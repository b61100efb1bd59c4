// Randomized tests over the request path and the config parser: properties that must hold for
// any input, checked on many generated ones (seeded, so failures reproduce).
#include <random>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "strangler/proxy/config.h"
#include "strangler/proxy/path_normalizer.h"
#include "strangler/proxy/router.h"

namespace strangler::proxy {
namespace {

std::string randomTarget(std::mt19937& random) {
  static const char* kPieces[] = {"/",   "//",   ".",        "..", "%2e", "%2E", "%2f", "%2F",
                                  "%5c", "%25",  "%41",      "%",  "%g",  "a",   "api", "drivers",
                                  "{x}", "?",    "#",        "\\", ";",   "~",   "%00", "%20",
                                  " ",   "\x7f", "\xc3\xa9", "-",  "_",   "7"};
  std::string target = random() % 10 == 0 ? "" : "/";
  const int count = static_cast<int>(random() % 14);
  for (int i = 0; i < count; ++i)
    target += kPieces[random() % std::size(kPieces)];
  return target;
}

TEST(RandomizedNormalizerTest, NormalizedPathsAreCanonicalAndStable) {
  std::mt19937 random(20261126);
  int accepted = 0;
  for (int i = 0; i < 50000; ++i) {
    const std::string target = randomTarget(random);
    auto result = normalizeTarget(target);
    if (!result) continue;
    ++accepted;
    const std::string& path = result->path;
    ASSERT_FALSE(path.empty()) << target;
    EXPECT_EQ(path.front(), '/') << target;
    EXPECT_EQ(path.find("//"), std::string::npos) << target << " -> " << path;
    EXPECT_EQ(path.find("/./"), std::string::npos) << target << " -> " << path;
    EXPECT_EQ(path.find("/../"), std::string::npos) << target << " -> " << path;
    EXPECT_FALSE(path.size() >= 3 && path.compare(path.size() - 3, 3, "/..") == 0) << target;
    EXPECT_EQ(path.find('\\'), std::string::npos) << target;
    EXPECT_EQ(path.find("%2F"), std::string::npos) << target;
    EXPECT_EQ(path.find("%2E"), std::string::npos) << target << " -> " << path;
    auto again = normalizeTarget(path);
    ASSERT_TRUE(again.ok()) << path;
    EXPECT_EQ(again->path, path) << "normalization must be idempotent: " << target;
  }
  EXPECT_GT(accepted, 1000);
}

TEST(RandomizedRouterTest, DecisionsNeverPointOutsideTheConfig) {
  auto config = ProxyConfig::parse(R"({
    "upstreams": {"monolith": {"endpoints": ["127.0.0.1:1"]}, "svc": {"endpoints": ["127.0.0.1:2"]}},
    "default_upstream": "monolith",
    "routes": [
      {"name": "a", "match": {"path": "/api/drivers/**"}, "target": "svc", "stage": "canary", "percent": 40,
       "sticky": {"cookie": "uid"}, "rewrite": {"prefix": "/api/drivers", "to": "/v2"}},
      {"name": "b", "match": {"path": "/api/{x}/7"}, "target": "svc", "stage": "extracted"},
      {"name": "c", "match": {"path": "/api"}, "stage": "monolith"}]})");
  ASSERT_TRUE(config.ok()) << config.error().message;
  Router router(*config);
  std::mt19937 random(7);
  for (int i = 0; i < 20000; ++i) {
    auto target = normalizeTarget(randomTarget(random));
    if (!target) continue;
    const HeaderList headers = {{"Cookie", "uid=" + std::to_string(random() % 50)}};
    const auto decision = router.decide({"GET", target->path, &headers}, random());
    EXPECT_TRUE(decision.upstream == "monolith" || decision.upstream == "svc");
    EXPECT_FALSE(decision.path.empty());
    EXPECT_EQ(decision.path.front(), '/');
    if (decision.route == nullptr) {
      EXPECT_EQ(decision.upstream, "monolith");
    }
  }
}

// Mutates a valid config at random places; validation must never throw and every error it
// reports must name a key path.
TEST(RandomizedConfigTest, ValidationNeverThrowsAndNamesKeyPaths) {
  const nlohmann::json valid = nlohmann::json::parse(R"({
    "listen": "127.0.0.1:8080", "admin": {"listen": "127.0.0.1:9901", "token_env": "T"},
    "upstreams": {"monolith": {"endpoints": ["127.0.0.1:8081"], "timeout_ms": 100,
                               "circuit_breaker": {"consecutive_failures": 2, "open_ms": 10}}},
    "default_upstream": "monolith",
    "routes": [{"name": "r", "match": {"path": "/a/{b}/**", "methods": ["GET"]}, "target": "monolith",
                "stage": "canary", "percent": 5, "sticky": {"header": "X"}, "fallback": true,
                "rewrite": {"prefix": "/a", "to": "/b"}, "cohort": "c", "shadow": {"ignore": ["/x"], "sample": 0.5}}]})");
  const nlohmann::json replacements[] = {nullptr,
                                         0,
                                         -1,
                                         150,
                                         1.5,
                                         "",
                                         "x",
                                         "/",
                                         "127.0.0.1:0",
                                         true,
                                         nlohmann::json::array(),
                                         nlohmann::json::object(),
                                         nlohmann::json::array({1, "a"}),
                                         "canary",
                                         "monolith"};
  std::mt19937 random(99);
  const auto flat = valid.flatten();
  std::vector<std::string> pointers;
  for (const auto& [pointer, value] : flat.items()) {
    (void)value;
    pointers.push_back(pointer);
  }
  for (int i = 0; i < 3000; ++i) {
    nlohmann::json doc = valid;
    const int edits = 1 + static_cast<int>(random() % 3);
    for (int e = 0; e < edits; ++e) {
      std::string pointer = pointers[random() % pointers.size()];
      // Sometimes replace a whole parent object or array instead of a leaf.
      if (random() % 4 == 0 && pointer.rfind('/') > 0)
        pointer = pointer.substr(0, pointer.rfind('/'));
      try {
        doc[nlohmann::json::json_pointer(pointer)] =
            replacements[random() % std::size(replacements)];
      } catch (const nlohmann::json::exception&) {
        continue;
      }
    }
    std::vector<std::string> errors;
    ASSERT_NO_THROW(errors = ProxyConfig::validate(doc)) << doc.dump();
    for (const auto& error : errors) {
      EXPECT_NE(error.find(": "), std::string::npos) << error;
      EXPECT_NE(error.front(), ':') << error;
    }
    auto created = ProxyConfig::create(doc);
    EXPECT_EQ(created.ok(), errors.empty()) << doc.dump();
    if (created.ok()) {
      auto round_trip = ProxyConfig::create(created->toJson());
      EXPECT_TRUE(round_trip.ok()) << created->toJson().dump();
    }
  }
}

}  // namespace
}  // namespace strangler::proxy
