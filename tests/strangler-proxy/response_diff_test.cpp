// Unit: how the shadow stage compares two answers.
#include "strangler/proxy/response_diff.h"

#include <gtest/gtest.h>

namespace strangler::proxy {
namespace {

using nlohmann::json;

CapturedResponse answer(int status, const std::string& body,
                        const std::string& type = "application/json") {
  CapturedResponse r;
  r.status = status;
  r.headers = {{"Content-Type", type}};
  r.body = body;
  return r;
}

TEST(JsonDifferences, KeyOrderAndNumberSpellingDoNotMatter) {
  EXPECT_TRUE(jsonDifferences(json::parse(R"({"a": 1, "b": [1, 2.5], "c": {"d": null}})"),
                              json::parse(R"({"c": {"d": null}, "b": [1.0, 2.5], "a": 1.0})"))
                  .empty());
}

TEST(JsonDifferences, NamesEachDifferingPointer) {
  const auto diffs = jsonDifferences(
      json::parse(R"({"a": 1, "b": [1, 2, 3], "c": {"x": "y"}, "only_a": true, "t": "1"})"),
      json::parse(R"({"a": 2, "b": [1, 5], "c": {"x": "y", "z": 0}, "t": 1})"));
  EXPECT_EQ(diffs, (std::vector<std::string>{"/a", "/b/1", "/b/2", "/c/z", "/only_a", "/t"}));
}

TEST(JsonDifferences, EscapesPointerTokensAndStopsAtTheLimit) {
  EXPECT_EQ(jsonDifferences(json::parse(R"({"a/b": 1, "m~n": 1})"),
                            json::parse(R"({"a/b": 2, "m~n": 2})")),
            (std::vector<std::string>{"/a~1b", "/m~0n"}));
  json a = json::array();
  json b = json::array();
  for (int i = 0; i < 100; ++i) {
    a.push_back(i);
    b.push_back(-i - 1);
  }
  EXPECT_EQ(jsonDifferences(a, b, 10).size(), 10u);
}

TEST(PointerCovered, PrefixesAndWildcards) {
  EXPECT_TRUE(pointerCovered("/updated_at", "/updated_at"));
  EXPECT_TRUE(pointerCovered("/meta", "/meta/etag"));
  EXPECT_FALSE(pointerCovered("/meta", "/metadata"));
  EXPECT_TRUE(pointerCovered("/items/*/updated_at", "/items/7/updated_at"));
  EXPECT_FALSE(pointerCovered("/items/*/updated_at", "/items/7/name"));
  EXPECT_FALSE(pointerCovered("/items/*/updated_at", "/items"));
  EXPECT_TRUE(pointerCovered("status", "status"));
  EXPECT_FALSE(pointerCovered("/status", "status"));
}

TEST(CompareResponses, EqualAnswersHaveNoDifferences) {
  EXPECT_TRUE(compareResponses(answer(200, R"({"id": 7, "name": "Ann"})"),
                               answer(200, R"({"name": "Ann", "id": 7.0})"), {})
                  .empty());
}

TEST(CompareResponses, StatusHeadersAndFieldsAreReported) {
  const auto diffs =
      compareResponses(answer(200, R"({"id": 7, "name": "Ann"})"),
                       answer(201, R"({"id": 7, "name": "Bob"})", "text/json"), CompareOptions{});
  EXPECT_EQ(diffs, (std::vector<std::string>{"status", "header:content-type", "/name"}));
}

TEST(CompareResponses, HeaderValuesCompareWithoutCaseOrPadding) {
  EXPECT_TRUE(
      compareResponses(answer(200, "{}", "Application/JSON "), answer(200, "{}"), {}).empty());
}

TEST(CompareResponses, IgnoredAndNoisyPointersAreLeftOut) {
  CompareOptions options;
  options.ignore = {"/updated_at", "/items/*/seen"};
  const auto monolith = answer(200, R"({"updated_at": 1, "items": [{"seen": 1, "v": 1}], "n": 1})");
  const auto target = answer(200, R"({"updated_at": 2, "items": [{"seen": 2, "v": 1}], "n": 2})");
  EXPECT_EQ(compareResponses(monolith, target, options), (std::vector<std::string>{"/n"}));
  EXPECT_TRUE(compareResponses(monolith, target, options, {"/n"}).empty());
}

TEST(CompareResponses, NonJsonBodiesCompareByteWise) {
  EXPECT_TRUE(
      compareResponses(answer(200, "plain", "text/plain"), answer(200, "plain", "text/plain"), {})
          .empty());
  EXPECT_EQ(
      compareResponses(answer(200, "plain", "text/plain"), answer(200, "plain ", "text/plain"), {}),
      (std::vector<std::string>{"body"}));
  // One side JSON, the other not: the bodies differ as bytes.
  EXPECT_EQ(compareResponses(answer(200, "{}"), answer(200, "<html>"), {}),
            (std::vector<std::string>{"body"}));
  // The caller learns which way they were compared (the shadow counts byte-wise comparisons).
  bool as_bytes = false;
  compareResponses(answer(200, "plain"), answer(200, "plain"), {}, {}, &as_bytes);
  EXPECT_TRUE(as_bytes);
  compareResponses(answer(200, R"({"a": 1})"), answer(200, R"({"a": 2})"), {}, {}, &as_bytes);
  EXPECT_FALSE(as_bytes);
}

}  // namespace
}  // namespace strangler::proxy
