// The real `monolith` process driven over HTTP, on SQLite and on PostgreSQL.
#include <gtest/gtest.h>

#include <atomic>
#include <memory>
#include <set>
#include <thread>

#include "strangler/testing/http_client.h"
#include "strangler/testing/postgres.h"
#include "strangler/testing/process.h"
#include "strangler/testing/temp_dir.h"

namespace strangler::monolith {
namespace {

using strangler::testing::ChildProcess;
using strangler::testing::httpRequest;
using strangler::testing::HttpResponse;

constexpr auto kStartTimeout = std::chrono::seconds(30);

/// A running monolith on a free loopback port.
class MonolithProcess {
 public:
  MonolithProcess(const std::string& db, int seed) {
    process_ = ChildProcess::start(STRANGLER_MONOLITH_BIN, {"--listen", "127.0.0.1:0", "--db", db,
                                                            "--seed", std::to_string(seed)});
    const auto line = process_->waitForLine("listening on http://", kStartTimeout);
    if (!line) throw std::runtime_error("monolith did not start: " + process_->output());
    const auto colon = line->rfind(':');
    port_ = static_cast<uint16_t>(std::stoi(line->substr(colon + 1)));
  }
  HttpResponse call(const std::string& method, const std::string& target,
                    const std::string& body = "") {
    return httpRequest("127.0.0.1", port_, method, target, body);
  }
  uint16_t port() const { return port_; }
  ChildProcess& process() { return *process_; }

 private:
  std::unique_ptr<ChildProcess> process_;
  uint16_t port_ = 0;
};

class MonolithHttpTest : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    std::string db;
    if (GetParam() == "postgresql") {
      STRANGLER_NEED_POSTGRES();
      schema_ =
          std::make_unique<strangler::testing::PostgresSchema>(*strangler::testing::postgresDsn());
      db = schema_->connectionString();
    } else {
      db = "sqlite3://db=" + dir_.file("monolith.db");
    }
    monolith_ = std::make_unique<MonolithProcess>(db, 1000);
  }

  strangler::testing::TempDir dir_;
  std::unique_ptr<strangler::testing::PostgresSchema> schema_;
  std::unique_ptr<MonolithProcess> monolith_;
};

TEST_P(MonolithHttpTest, SeededMonolithServesATripEndToEnd) {
  auto drivers = monolith_->call("GET", "/api/drivers?limit=5");
  ASSERT_EQ(drivers.status, 200);
  EXPECT_EQ(drivers.json()["total"], 1000);
  EXPECT_EQ(drivers.json()["data"].size(), 5u);

  auto nearby = monolith_->call("GET", "/api/drivers/nearby?lat=37.5665&lng=126.978&radius_km=2");
  ASSERT_EQ(nearby.status, 200) << nearby.body;
  const auto candidates = nearby.json()["data"];
  ASSERT_FALSE(candidates.empty());
  const int64_t nearest = candidates[0]["id"];
  EXPECT_LE(candidates[0]["distance_m"].get<int64_t>(),
            candidates.back()["distance_m"].get<int64_t>());

  auto trip = monolith_->call("POST", "/api/trips",
                              R"({"passenger_id": 1, "pickup": {"lat": 37.5665, "lng": 126.978},
                                  "dropoff": {"lat": 37.4979, "lng": 127.0276}})");
  ASSERT_EQ(trip.status, 201) << trip.body;
  const auto t = trip.json();
  EXPECT_EQ(t["driver_id"], nearest);
  EXPECT_EQ(t["status"], "assigned");
  EXPECT_EQ(trip.header("location"), "/api/trips/" + t["id"].dump());
  EXPECT_EQ(monolith_->call("GET", "/api/drivers/" + std::to_string(nearest)).json()["status"],
            "on_trip");

  auto done = monolith_->call("POST", "/api/trips/" + t["id"].dump() + "/complete");
  ASSERT_EQ(done.status, 200) << done.body;
  EXPECT_EQ(done.json()["status"], "completed");
  const auto invoice_id = done.json()["invoice_id"];
  ASSERT_TRUE(invoice_id.is_number());
  auto invoice = monolith_->call("GET", "/api/invoices/" + invoice_id.dump());
  ASSERT_EQ(invoice.status, 200);
  EXPECT_EQ(invoice.json()["amount_cents"], t["fare_cents"]);
  EXPECT_EQ(invoice.json()["trip_id"], t["id"]);
  auto driver = monolith_->call("GET", "/api/drivers/" + std::to_string(nearest)).json();
  EXPECT_EQ(driver["status"], "available");
  EXPECT_GE(driver["completed_trips"].get<int>(), 1);

  auto again = monolith_->call("POST", "/api/trips/" + t["id"].dump() + "/complete");
  EXPECT_EQ(again.status, 409);
  EXPECT_EQ(again.json()["error"], "conflict");
}

TEST_P(MonolithHttpTest, RegistersAndUpdatesADriver) {
  auto created = monolith_->call("POST", "/api/drivers",
                                 R"({"name": "Yoon Ha-eun", "phone": "+82-10-2222-3333",
          "car": {"plate": "56다 7890", "model": "Kia Niro EV"}})");
  ASSERT_EQ(created.status, 201) << created.body;
  const auto id = created.json()["id"].dump();
  EXPECT_EQ(created.json()["status"], "offline");
  EXPECT_TRUE(created.json()["location"].is_null());
  EXPECT_EQ(created.json()["car"]["plate"], "56다 7890");

  auto moved = monolith_->call("PUT", "/api/drivers/" + id + "/location",
                               R"({"lat": 37.55, "lng": 126.99})");
  ASSERT_EQ(moved.status, 200) << moved.body;
  EXPECT_EQ(moved.json()["location"]["lat"], 37.55);
  auto online =
      monolith_->call("PUT", "/api/drivers/" + id + "/status", R"({"status": "available"})");
  ASSERT_EQ(online.status, 200);
  EXPECT_EQ(online.json()["status"], "available");
  EXPECT_EQ(
      monolith_->call("PUT", "/api/drivers/" + id + "/status", R"({"status": "on_trip"})").status,
      400);
}

TEST_P(MonolithHttpTest, BadInputGetsA4xxWithAJsonError) {
  struct Case {
    std::string method, target, body;
    int status;
    std::string error;
  };
  const std::vector<Case> cases{
      {"POST", "/api/trips", "{not json", 400, "invalid_request"},
      {"POST", "/api/trips", "[1, 2]", 400, "invalid_request"},
      {"POST", "/api/trips", R"({"passenger_id": "7"})", 400, "invalid_request"},
      {"POST", "/api/trips",
       R"({"passenger_id": 999999, "pickup": {"lat": 37.5, "lng": 127}, "dropoff": {"lat": 37.6, "lng": 127}})",
       404, "not_found"},
      {"POST", "/api/trips",
       R"({"passenger_id": 1, "pickup": {"lat": 137.5, "lng": 127}, "dropoff": {"lat": 37.6, "lng": 127}})",
       400, "invalid_request"},
      {"POST", "/api/passengers", R"({"name": 5, "phone": "+82-10-1111-2222"})", 400,
       "invalid_request"},
      {"POST", "/api/drivers", R"({"name": "A", "phone": "+82-10-1111-2222"})", 400,
       "invalid_request"},
      {"PUT", "/api/drivers/1001/location", R"({"lat": "north"})", 400, "invalid_request"},
      {"GET", "/api/drivers/nearby?lat=abc&lng=1", "", 400, "invalid_request"},
      {"GET", "/api/drivers/nearby?lat=37.5&lng=127&radius_km=500", "", 400, "invalid_request"},
      {"GET", "/api/drivers/99999999", "", 404, "not_found"},
      {"GET", "/api/drivers/abc", "", 404, "not_found"},
      {"GET", "/api/drivers/99999999999999999999999", "", 404, "not_found"},
      {"GET", "/api/trips/0", "", 404, "not_found"},
      {"GET", "/api/invoices/-1", "", 404, "not_found"},
      {"GET", "/api/nothing-here", "", 404, "not_found"},
      {"DELETE", "/api/drivers/1001", "", 405, "method_not_allowed"},
      {"POST", "/api/trips/99999999/complete", "", 404, "not_found"},
      {"POST", "/api/trips/1/complete", "", 409, "conflict"},  // seeded trips are completed
  };
  for (const auto& c : cases) {
    auto r = monolith_->call(c.method, c.target, c.body);
    EXPECT_EQ(r.status, c.status) << c.method << " " << c.target << " " << c.body << " -> "
                                  << r.body;
    ASSERT_NO_THROW(r.json()) << r.body;
    EXPECT_EQ(r.json()["error"], c.error) << c.method << " " << c.target;
    EXPECT_TRUE(r.json()["message"].is_string());
  }
  auto not_allowed = monolith_->call("DELETE", "/api/drivers/1001");
  EXPECT_EQ(not_allowed.header("allow"), "GET");
  // After all that, the service still serves.
  EXPECT_EQ(monolith_->call("GET", "/healthz").status, 200);
}

TEST_P(MonolithHttpTest, OversizedAndMalformedRequestsDoNotHurtTheServer) {
  auto big = monolith_->call("POST", "/api/passengers", std::string(200 * 1024, 'x'));
  EXPECT_EQ(big.status, 413);
  const auto garbage =
      strangler::testing::rawExchange("127.0.0.1", monolith_->port(), "GARBAGE\r\n\r\n");
  EXPECT_EQ(garbage.rfind("HTTP/1.", 0), 0u) << garbage;
  EXPECT_NE(garbage.find(" 400 "), std::string::npos) << garbage;
  strangler::testing::rawExchange("127.0.0.1", monolith_->port(),
                                  "POST /api/passengers HTTP/1.1\r\nHost: x\r\nContent-Length: "
                                  "50\r\n\r\n{\"name\"");  // truncated body, then close
  EXPECT_EQ(monolith_->call("GET", "/healthz").status, 200);
  EXPECT_FALSE(monolith_->process().wait(std::chrono::milliseconds(0)));  // still running
}

TEST_P(MonolithHttpTest, ParallelTripRequestsNeverDoubleBookADriver) {
  std::atomic<int> created{0};
  std::atomic<int> unexpected{0};
  std::mutex mutex;
  std::multiset<int64_t> drivers;
  std::vector<std::thread> clients;
  for (int c = 0; c < 8; ++c) {
    clients.emplace_back([&, c] {
      for (int i = 0; i < 5; ++i) {
        auto r = monolith_->call(
            "POST", "/api/trips",
            R"({"passenger_id": )" + std::to_string(c * 5 + i + 1) +
                R"(, "pickup": {"lat": 37.5665, "lng": 126.978}, "dropoff": {"lat": 37.5, "lng": 127.0}})");
        if (r.status == 201) {
          ++created;
          std::lock_guard lock(mutex);
          drivers.insert(r.json()["driver_id"].get<int64_t>());
        } else {
          ++unexpected;
        }
      }
    });
  }
  for (auto& t : clients)
    t.join();
  EXPECT_EQ(unexpected.load(), 0);
  EXPECT_EQ(created.load(), 40);
  EXPECT_EQ(std::set<int64_t>(drivers.begin(), drivers.end()).size(), drivers.size());
}

TEST_P(MonolithHttpTest, RestartKeepsDataAndDoesNotReseed) {
  auto before = monolith_->call("GET", "/api/passengers?limit=1").json();
  auto added = monolith_->call("POST", "/api/passengers",
                               R"({"name": "Han Su-ah", "phone": "+82-10-7777-8888"})");
  ASSERT_EQ(added.status, 201);
  EXPECT_EQ(monolith_->process().stop(), 0);  // clean exit on SIGTERM
  // Same database, seeding asked again: it must be skipped.
  std::string db = GetParam() == "postgresql" ? schema_->connectionString()
                                              : "sqlite3://db=" + dir_.file("monolith.db");
  monolith_ = std::make_unique<MonolithProcess>(db, 1000);
  auto after = monolith_->call("GET", "/api/passengers?limit=1").json();
  EXPECT_EQ(after["total"], before["total"].get<int>() + 1);
  EXPECT_EQ(after["data"][0], before["data"][0]);
  EXPECT_EQ(monolith_->call("GET", "/api/passengers/" + added.json()["id"].dump()).json()["name"],
            "Han Su-ah");
}

INSTANTIATE_TEST_SUITE_P(Engines, MonolithHttpTest, ::testing::Values("sqlite3", "postgresql"),
                         [](const auto& param_info) { return param_info.param; });

TEST(MonolithCliTest, RejectsBadArgumentsWithUsageExit) {
  auto bad_db = strangler::testing::runCommand(STRANGLER_MONOLITH_BIN,
                                               {"--listen", "127.0.0.1:0", "--db", "mysql://x"});
  EXPECT_EQ(bad_db.exit_code, 2);
  auto bad_listen = strangler::testing::runCommand(STRANGLER_MONOLITH_BIN, {"--listen", "nowhere"});
  EXPECT_EQ(bad_listen.exit_code, 2);
  auto unreachable = strangler::testing::runCommand(
      STRANGLER_MONOLITH_BIN,
      {"--listen", "127.0.0.1:0", "--db", "sqlite3://db=/nonexistent-dir/x/monolith.db"});
  EXPECT_EQ(unreachable.exit_code, 1);
}

}  // namespace
}  // namespace strangler::monolith
