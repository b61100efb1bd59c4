// Contract tests: the same legacy API calls against the real monolith and the real
// driver-service give the same status codes and the same JSON, byte for byte once the clock
// fields are compared for closeness. A legacy client must not be able to tell them apart.
#include <gtest/gtest.h>

#include <cmath>
#include <memory>

#include "strangler/testing/http_client.h"
#include "strangler/testing/process.h"
#include "strangler/testing/temp_dir.h"

namespace strangler::driver_service {
namespace {

using nlohmann::json;
using strangler::testing::ChildProcess;
using strangler::testing::httpRequest;
using strangler::testing::HttpResponse;

struct Server {
  std::unique_ptr<ChildProcess> process;
  uint16_t port = 0;

  static Server start(const std::string& binary, const std::vector<std::string>& args) {
    Server s;
    s.process = ChildProcess::start(binary, args);
    const auto line = s.process->waitForLine("listening on http://", std::chrono::seconds(30));
    if (!line) throw std::runtime_error(binary + " did not start: " + s.process->output());
    s.port = static_cast<uint16_t>(std::stoi(line->substr(line->rfind(':') + 1)));
    return s;
  }
  HttpResponse call(const std::string& method, const std::string& target,
                    const std::string& body = "") const {
    return httpRequest("127.0.0.1", port, method, target, body);
  }
};

// Clock fields may differ by the second that passed between the two calls: check they are
// close, then blank them so the rest must match exactly.
void normalizeClock(json& a, json& b, const std::string& where) {
  if (a.is_object() && b.is_object()) {
    for (auto& [key, value] : a.items()) {
      if (!b.contains(key)) continue;
      if ((key == "created_at" || key == "location_updated_at") && value.is_number() &&
          b[key].is_number()) {
        EXPECT_LE(std::llabs(value.get<int64_t>() - b[key].get<int64_t>()), 5) << where;
        value = 0;
        b[key] = 0;
      } else {
        normalizeClock(value, b[key], where);
      }
    }
  } else if (a.is_array() && b.is_array() && a.size() == b.size()) {
    for (size_t i = 0; i < a.size(); ++i)
      normalizeClock(a[i], b[i], where);
  }
}

class DriverContractTest : public ::testing::Test {
 protected:
  void SetUp() override {
    monolith_ = Server::start(STRANGLER_MONOLITH_BIN, {"--listen", "127.0.0.1:0", "--db",
                                                       "sqlite3://db=" + dir_.file("m.db")});
    service_ =
        Server::start(STRANGLER_DRIVER_SERVICE_BIN,
                      {"--listen", "127.0.0.1:0", "--db", "sqlite3://db=" + dir_.file("ds.db"),
                       "--monolith", "http://127.0.0.1:" + std::to_string(monolith_.port)});
  }

  // Sends the same call to both and expects the same answer.
  void same(const std::string& method, const std::string& target, const std::string& body = "") {
    const auto where = method + " " + target + " " + body;
    const auto legacy = monolith_.call(method, target, body);
    const auto extracted = service_.call(method, target, body);
    EXPECT_EQ(legacy.status, extracted.status)
        << where << "\n monolith: " << legacy.body << "\n service:  " << extracted.body;
    EXPECT_EQ(legacy.header("allow"), extracted.header("allow")) << where;
    EXPECT_EQ(legacy.header("location"), extracted.header("location")) << where;
    EXPECT_EQ(legacy.header("content-type"), extracted.header("content-type")) << where;
    json a = json::parse(legacy.body, nullptr, false);
    json b = json::parse(extracted.body, nullptr, false);
    ASSERT_FALSE(a.is_discarded()) << where << ": " << legacy.body;
    normalizeClock(a, b, where);
    EXPECT_EQ(a.dump(), b.dump()) << where;
    ++compared_;
  }

  strangler::testing::TempDir dir_;
  Server monolith_;
  Server service_;
  int compared_ = 0;
};

TEST_F(DriverContractTest, EveryLegacyDriverEndpointAnswersTheSame) {
  // Registrations, valid and not.
  same("POST", "/api/drivers",
       R"({"name": "Kim Min-jun", "phone": "+82-10-1234-5678", "status": "available",
           "car": {"plate": "12가 3456", "model": "Kia K5"},
           "location": {"lat": 37.56650049, "lng": 126.9780004}})");
  same(
      "POST", "/api/drivers",
      R"({"name": "Lee Seo-yeon", "phone": "010 9999 8888", "car": {"plate": "34나 5678", "model": "Ioniq 5"}})");
  same("POST", "/api/drivers",
       R"({"name": "Park Ji-ho", "phone": "+82-10-5555-1212", "status": "offline",
           "car": {"plate": "56다 7890", "model": "Sonata"}, "location": {"lat": 37.57, "lng": 126.98}})");
  same("POST", "/api/drivers", "{nope");
  same("POST", "/api/drivers", "[]");
  same("POST", "/api/drivers", "{}");
  same("POST", "/api/drivers", R"({"name": 7, "phone": null, "car": "K5"})");
  same("POST", "/api/drivers",
       R"({"name": "", "phone": "call me", "car": {"plate": "", "model": ""}})");
  same(
      "POST", "/api/drivers",
      R"({"name": "A", "phone": "+82-10-1111-2222", "car": {"plate": "1", "model": "m"}, "status": "on_trip"})");
  same(
      "POST", "/api/drivers",
      R"({"name": "A", "phone": "+82-10-1111-2222", "car": {"plate": "1", "model": "m"}, "location": {"lat": 91, "lng": 0}})");
  same(
      "POST", "/api/drivers",
      R"({"name": "A", "phone": "+82-10-1111-2222", "car": {"plate": "1", "model": "m"}, "location": {"lat": "x"}})");
  same("POST", "/api/drivers", std::string(70 * 1024, ' '));

  // Reads.
  for (const char* target :
       {"/api/drivers", "/api/drivers?limit=2&offset=1", "/api/drivers?limit=abc",
        "/api/drivers?limit=0", "/api/drivers?limit=9999&offset=-3", "/api/drivers/1",
        "/api/drivers/2", "/api/drivers/999", "/api/drivers/abc", "/api/drivers/0",
        "/api/drivers/1/unknown"}) {
    same("GET", target);
  }

  // Moves and status changes.
  same("PUT", "/api/drivers/2/location", R"({"lat": 37.5651234567, "lng": 126.9771})");
  same("PUT", "/api/drivers/2/location", R"({"lat": "north", "lng": 1})");
  same("PUT", "/api/drivers/2/location", R"({"lat": 100, "lng": 1})");
  same("PUT", "/api/drivers/2/location", R"({})");
  same("PUT", "/api/drivers/999/location", R"({"lat": 1, "lng": 1})");
  same("PUT", "/api/drivers/x/location", R"({"lat": 1, "lng": 1})");
  same("PUT", "/api/drivers/2/status", R"({"status": "available"})");
  same("PUT", "/api/drivers/3/status", R"({"status": "available"})");
  same("PUT", "/api/drivers/3/status", R"({"status": "offline"})");
  same("PUT", "/api/drivers/2/status", R"({"status": "on_trip"})");
  same("PUT", "/api/drivers/2/status", R"({"status": "napping"})");
  same("PUT", "/api/drivers/2/status", R"({"status": 1})");
  same("PUT", "/api/drivers/999/status", R"({"status": "offline"})");

  // Nearby, with its defaults and limits.
  for (const char* target : {"/api/drivers/nearby?lat=37.5665&lng=126.978",
                             "/api/drivers/nearby?lat=37.5665&lng=126.978&radius_km=0.05",
                             "/api/drivers/nearby?lat=37.5665&lng=126.978&radius_km=3&limit=1",
                             "/api/drivers/nearby?lat=37.5665&lng=126.978&radius_km=60",
                             "/api/drivers/nearby?lat=37.5665&lng=126.978&radius_km=0",
                             "/api/drivers/nearby?lng=126.978", "/api/drivers/nearby?lat=abc&lng=1",
                             "/api/drivers/nearby?lat=95&lng=1"}) {
    same("GET", target);
  }

  // Wrong methods.
  same("DELETE", "/api/drivers/1");
  same("DELETE", "/api/drivers");
  same("PATCH", "/api/drivers/nearby");
  EXPECT_GE(compared_, 45);
}

TEST_F(DriverContractTest, TripCountsComeFromTheMonolithAndSurviveItsOutage) {
  same("POST", "/api/drivers",
       R"({"name": "Kim Min-jun", "phone": "+82-10-1234-5678", "status": "available",
           "car": {"plate": "12가 3456", "model": "Kia K5"}, "location": {"lat": 37.5665, "lng": 126.978}})");
  same(
      "POST", "/api/drivers",
      R"({"name": "Lee Seo-yeon", "phone": "+82-10-9999-8888", "car": {"plate": "34나 5678", "model": "Ioniq 5"}})");
  // A ride in the monolith (which still owns trips) for driver 1.
  ASSERT_EQ(
      monolith_.call("POST", "/api/passengers", R"({"name": "Rider", "phone": "+82-10-1111-2222"})")
          .status,
      201);
  auto trip = monolith_.call("POST", "/api/trips",
                             R"({"passenger_id": 3, "pickup": {"lat": 37.5665, "lng": 126.978},
                                 "dropoff": {"lat": 37.5, "lng": 127.0}})");
  ASSERT_EQ(trip.status, 201) << trip.body;
  ASSERT_EQ(trip.json()["driver_id"], 1);
  ASSERT_EQ(monolith_.call("POST", "/api/trips/" + trip.json()["id"].dump() + "/complete").status,
            200);
  same("GET", "/api/drivers/1");  // completed_trips: 1 on both sides
  EXPECT_EQ(service_.call("GET", "/api/drivers/1").json()["completed_trips"], 1);

  // The monolith goes away: the last value seen is served; an unknown one is flagged.
  monolith_.process->stop();
  auto cached = service_.call("GET", "/api/drivers/1");
  EXPECT_EQ(cached.status, 200);
  EXPECT_EQ(cached.json()["completed_trips"], 1);
  EXPECT_EQ(cached.header("warning"), "");
  auto unknown = service_.call("GET", "/api/drivers/2");
  EXPECT_EQ(unknown.status, 200);
  EXPECT_EQ(unknown.json()["completed_trips"], 0);
  EXPECT_NE(unknown.header("warning").find("completed_trips unavailable"), std::string::npos);
}

TEST_F(DriverContractTest, ModernApiSpeaksTheServiceModel) {
  auto created =
      service_.call("POST", "/v2/drivers",
                    R"({"name": "Han Su-ah", "phone": "+82-10-7777-8888", "status": "AVAILABLE",
          "vehicle": {"plate": "78라 1234", "model": "Niro"}, "location": {"lat": 37.5665, "lng": 126.978}})");
  ASSERT_EQ(created.status, 201) << created.body;
  EXPECT_EQ(created.json()["status"], "AVAILABLE");
  EXPECT_EQ(created.json()["vehicle"]["model"], "Niro");
  // The same driver through the legacy door, in the legacy shape.
  auto legacy = service_.call("GET", "/api/drivers/" + created.json()["id"].dump());
  EXPECT_EQ(legacy.json()["status"], "available");
  EXPECT_EQ(legacy.json()["car"]["plate"], "78라 1234");
  auto nearby = service_.call("GET", "/v2/drivers/nearby?lat=37.5665&lng=126.978&radiusM=100");
  ASSERT_EQ(nearby.status, 200);
  ASSERT_EQ(nearby.json()["items"].size(), 1u);
  EXPECT_EQ(nearby.json()["items"][0]["distanceM"], 0.0);
}

}  // namespace
}  // namespace strangler::driver_service
