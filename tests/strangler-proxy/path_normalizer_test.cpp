#include "strangler/proxy/path_normalizer.h"

#include <gtest/gtest.h>

namespace strangler::proxy {
namespace {

std::string normalized(const std::string& target) {
  auto result = normalizeTarget(target);
  return result.ok() ? result->path : "ERROR";
}

TEST(PathNormalizerTest, KeepsCanonicalPaths) {
  EXPECT_EQ(normalized("/"), "/");
  EXPECT_EQ(normalized("/api/trips"), "/api/trips");
  EXPECT_EQ(normalized("/api/trips/"), "/api/trips/");
}

TEST(PathNormalizerTest, FoldsRepeatedSlashes) {
  EXPECT_EQ(normalized("//api///trips"), "/api/trips");
  EXPECT_EQ(normalized("//"), "/");
}

TEST(PathNormalizerTest, ResolvesDotSegments) {
  EXPECT_EQ(normalized("/api/./trips"), "/api/trips");
  EXPECT_EQ(normalized("/api/drivers/../trips"), "/api/trips");
  EXPECT_EQ(normalized("/api/trips/."), "/api/trips/");
  EXPECT_EQ(normalized("/api/trips/.."), "/api/");
  EXPECT_EQ(normalized("/a/b/../../c"), "/c");
}

TEST(PathNormalizerTest, DecodesUnreservedEscapesBeforeResolvingDots) {
  EXPECT_EQ(normalized("/api/%2e%2e/private"), "/private");
  EXPECT_EQ(normalized("/api/%2E/trips"), "/api/trips");
  EXPECT_EQ(normalized("/api/%74rips"), "/api/trips");
  EXPECT_EQ(normalized("/api/a%7eb"), "/api/a~b");
}

TEST(PathNormalizerTest, CanonicalizesOtherEscapes) {
  EXPECT_EQ(normalized("/api/a%20b"), "/api/a%20b");
  EXPECT_EQ(normalized("/api/a%3ab"), "/api/a%3Ab");
}

TEST(PathNormalizerTest, RefusesAmbiguousSpellings) {
  EXPECT_EQ(normalized("/api/drivers%2f7"), "ERROR");
  EXPECT_EQ(normalized("/api/drivers%2F7"), "ERROR");
  EXPECT_EQ(normalized("/api%5cdrivers"), "ERROR");
  EXPECT_EQ(normalized("/api\\drivers"), "ERROR");
  EXPECT_EQ(normalized("/api/%00"), "ERROR");
  EXPECT_EQ(normalized("/api/%252e%252e/x"), "ERROR");
  EXPECT_EQ(normalized("/api/%zz"), "ERROR");
  EXPECT_EQ(normalized("/api/%2"), "ERROR");
  EXPECT_EQ(normalized("/api/%"), "ERROR");
  EXPECT_EQ(normalized("/api/\x80"), "ERROR");
  EXPECT_EQ(normalized("/api/ x"), "ERROR");
  EXPECT_EQ(normalized("/api#frag"), "ERROR");
}

TEST(PathNormalizerTest, RefusesClimbingAboveTheRoot) {
  EXPECT_EQ(normalized("/.."), "ERROR");
  EXPECT_EQ(normalized("/api/../../etc/passwd"), "ERROR");
  EXPECT_EQ(normalized("/%2e%2e/x"), "ERROR");
}

TEST(PathNormalizerTest, RefusesDotSegmentsWithParameters) {
  // Servlet containers read "..;x" as "..": the route would be chosen for another path.
  EXPECT_EQ(normalized("/public/..;/admin/x"), "ERROR");
  EXPECT_EQ(normalized("/public/%2e%2E;x=1/admin"), "ERROR");
  EXPECT_EQ(normalized("/public/.;/admin"), "ERROR");
  EXPECT_EQ(normalized("/public/..%3b/admin"), "ERROR");
  EXPECT_EQ(normalized("/public/...;/x"), "/public/...;/x");
  EXPECT_EQ(normalized("/public/a;b/x"), "/public/a;b/x");
}

TEST(PathNormalizerTest, RefusesTargetsThatAreNotOriginForm) {
  EXPECT_EQ(normalized("api/trips"), "ERROR");
  EXPECT_EQ(normalized("*"), "ERROR");
  EXPECT_EQ(normalized(""), "ERROR");
}

TEST(PathNormalizerTest, KeepsTheQueryApart) {
  auto result = normalizeTarget("/api//trips/./?page=2&x=/../y");
  ASSERT_TRUE(result.ok());
  EXPECT_EQ(result->path, "/api/trips/");
  EXPECT_TRUE(result->has_query);
  EXPECT_EQ(result->query, "page=2&x=/../y");
}

TEST(PathNormalizerTest, IsIdempotent) {
  for (const char* target : {"/a/./b//c/../d", "/x/%2e/y/%41", "/q/%20/r/"}) {
    const auto once = normalized(target);
    EXPECT_EQ(normalized(once), once) << target;
  }
}

}  // namespace
}  // namespace strangler::proxy
