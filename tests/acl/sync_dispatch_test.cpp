// After the flip, a location written through driver-service reaches the monolith's dispatch:
// real monolith, real driver-service, the real `strangler sync` between their databases.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "strangler/testing/http_client.h"
#include "strangler/testing/process.h"
#include "strangler/testing/temp_dir.h"

namespace strangler::acl::sync {
namespace {

using strangler::testing::ChildProcess;
using strangler::testing::httpRequest;

uint16_t portOf(ChildProcess& process) {
  const auto line = process.waitForLine("listening on http://", std::chrono::seconds(30));
  if (!line) throw std::runtime_error("did not start: " + process.output());
  return static_cast<uint16_t>(std::stoi(line->substr(line->rfind(':') + 1)));
}

TEST(SyncDispatchTest, MonolithDispatchSeesLocationsWrittenThroughTheService) {
  strangler::testing::TempDir dir;
  const std::string monolith_db = "sqlite3://db=" + dir.file("monolith.db");
  const std::string service_db = "sqlite3://db=" + dir.file("drivers.db");
  auto monolith = ChildProcess::start(
      STRANGLER_MONOLITH_BIN, {"--listen", "127.0.0.1:0", "--db", monolith_db, "--seed", "100"});
  const auto monolith_port = portOf(*monolith);
  const auto sync = [&](std::vector<std::string> args) {
    args.insert(args.begin(), "sync");
    for (const auto& a : {"--from", monolith_db.c_str(), "--to", service_db.c_str()})
      args.emplace_back(a);
    return strangler::testing::runCommand(STRANGLER_CLI_BIN, args, std::chrono::seconds(60));
  };
  ASSERT_EQ(sync({"run"}).exit_code, 0);
  auto service = ChildProcess::start(STRANGLER_DRIVER_SERVICE_BIN,
                                     {"--listen", "127.0.0.1:0", "--db", service_db, "--monolith",
                                      "http://127.0.0.1:" + std::to_string(monolith_port)});
  const auto service_port = portOf(*service);
  ASSERT_EQ(sync({"flip"}).exit_code, 0);

  // Busan, far from every seeded driver (they are around Seoul).
  const std::string busan = R"({"lat": 35.1796, "lng": 129.0756})";
  const auto moved =
      httpRequest("127.0.0.1", service_port, "PUT", "/api/drivers/150/location", busan);
  ASSERT_EQ(moved.status, 200) << moved.body;
  ASSERT_EQ(httpRequest("127.0.0.1", service_port, "PUT", "/api/drivers/150/status",
                        R"({"status": "available"})")
                .status,
            200);
  ASSERT_EQ(sync({"run"}).exit_code, 0);

  const auto trip = httpRequest("127.0.0.1", monolith_port, "POST", "/api/trips",
                                R"({"passenger_id": 1, "pickup": {"lat": 35.18, "lng": 129.076},
                                    "dropoff": {"lat": 35.10, "lng": 129.04}})");
  ASSERT_EQ(trip.status, 201) << trip.body;
  EXPECT_EQ(trip.json()["driver_id"], 150);
  // The monolith's own write (dispatch put driver 150 on_trip) reaches the service too, though
  // the service owns the drivers now: both sides agree.
  ASSERT_EQ(sync({"run"}).exit_code, 0);
  const auto seen = httpRequest("127.0.0.1", service_port, "GET", "/api/drivers/150");
  ASSERT_EQ(seen.status, 200) << seen.body;
  EXPECT_EQ(seen.json()["status"], "on_trip") << seen.body;
  auto verify = sync({"verify", "--json"});
  EXPECT_EQ(verify.exit_code, 0) << verify.output;
  EXPECT_EQ(nlohmann::json::parse(verify.output)["differing_keys"], nlohmann::json::array())
      << verify.output;
}

}  // namespace
}  // namespace strangler::acl::sync
