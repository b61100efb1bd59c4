// `strangler sync watch --status-listen`: the live figures the proxy's dashboard shows, served
// by the real sync process while the real monolith takes writes.
#include <gtest/gtest.h>

#include <chrono>
#include <csignal>
#include <nlohmann/json.hpp>
#include <regex>
#include <thread>

#include "strangler/testing/http_client.h"
#include "strangler/testing/process.h"
#include "strangler/testing/temp_dir.h"

namespace strangler::cli {
namespace {

using nlohmann::json;
using std::chrono::seconds;
using strangler::testing::ChildProcess;

uint16_t portOf(const std::string& line, const std::string& pattern) {
  std::smatch m;
  if (!std::regex_search(line, m, std::regex(pattern))) return 0;
  return static_cast<uint16_t>(std::stoi(m[1].str()));
}

template <typename Ready>
json waitForStatus(uint16_t port, Ready ready) {
  const auto deadline = std::chrono::steady_clock::now() + seconds(20);
  json status;
  while (std::chrono::steady_clock::now() < deadline) {
    status = strangler::testing::httpRequest("127.0.0.1", port, "GET", "/status").json();
    if (ready(status)) return status;
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  ADD_FAILURE() << "status never got ready: " << status.dump();
  return status;
}

TEST(SyncStatusTest, WatchServesLagRateAndPendingChanges) {
  strangler::testing::TempDir dir;
  const std::string monolith_db = "sqlite3://db=" + dir.file("monolith.db");
  auto monolith = ChildProcess::start(
      STRANGLER_MONOLITH_BIN, {"--listen", "127.0.0.1:0", "--db", monolith_db, "--seed", "50"});
  const auto listening = monolith->waitForLine("listening on", seconds(20));
  ASSERT_TRUE(listening) << monolith->output();
  const uint16_t monolith_port = portOf(*listening, R"(http://127\.0\.0\.1:(\d+))");

  auto sync = ChildProcess::start(
      STRANGLER_CLI_BIN,
      {"sync", "watch", "--from", monolith_db, "--to", "sqlite3://db=" + dir.file("service.db"),
       "--status-listen", "127.0.0.1:0", "--verify-every", "1"});
  const auto line = sync->waitForLine("sync status on http://", seconds(20));
  ASSERT_TRUE(line) << sync->output();
  const uint16_t port = portOf(*line, R"(http://127\.0\.0\.1:(\d+)/status)");
  ASSERT_NE(port, 0) << *line;

  auto status = waitForStatus(port, [](const json& s) { return s["state"] == "streaming"; });
  EXPECT_EQ(status["mapping"], "drivers");
  EXPECT_EQ(status["direction"], "forward");
  EXPECT_EQ(status["rows_copied"], 50);
  EXPECT_TRUE(status.contains("updated_at"));
  EXPECT_TRUE(status["lag_ms"].is_null()) << "no change applied yet: " << status.dump();

  // A write in the monolith is captured, applied, and shows up as lag, rate and position.
  for (int i = 0; i < 5; ++i) {
    const auto put = strangler::testing::httpRequest(
        "127.0.0.1", monolith_port, "PUT", "/api/drivers/51/location",
        json{{"lat", 37.55 + i * 0.001}, {"lng", 126.97}}.dump());
    ASSERT_EQ(put.status, 200) << put.body;
  }
  status = waitForStatus(port, [](const json& s) {
    return s.value("changes_applied", 0) >= 1 && s["pending_changes"] == 0 &&
           !s["last_verify"].is_null();
  });
  EXPECT_TRUE(status["lag_ms"].is_number_integer()) << status.dump();
  EXPECT_GE(status["lag_ms"].get<int64_t>(), 0);
  EXPECT_LT(status["lag_ms"].get<int64_t>(), 5000) << status.dump();
  EXPECT_NE(status["position"].get<std::string>(), "0");
  EXPECT_GT(status["rows_per_second"].get<double>(), 0.0) << status.dump();
  EXPECT_FALSE(status["last_applied_at"].is_null());
  EXPECT_EQ(status["last_verify"]["source_rows"], 50) << status.dump();

  // A fence and what is left to apply up to it: nothing, the sync has caught up.
  const auto positions = strangler::testing::httpRequest("127.0.0.1", port, "GET", "/positions");
  ASSERT_EQ(positions.status, 200) << positions.body;
  EXPECT_EQ(positions.json()["mapping"], "drivers");
  const std::string fence = "/backlog?monolith=" + positions.json()["monolith"].get<std::string>() +
                            "&service=" + positions.json()["service"].get<std::string>();
  const auto backlog = strangler::testing::httpRequest("127.0.0.1", port, "GET", fence);
  ASSERT_EQ(backlog.status, 200) << backlog.body;
  EXPECT_EQ(backlog.json()["forward"], 0) << backlog.body;
  EXPECT_TRUE(backlog.json()["caught_up"].get<bool>()) << backlog.body;
  // A bad or missing fence is a clear 400, never a crash.
  EXPECT_EQ(strangler::testing::httpRequest("127.0.0.1", port, "GET", "/backlog").status, 400);
  const auto bad =
      strangler::testing::httpRequest("127.0.0.1", port, "GET", "/backlog?monolith=zz&service=%00");
  EXPECT_EQ(bad.status, 400) << bad.body;
  EXPECT_EQ(strangler::testing::httpRequest("127.0.0.1", port, "GET", "/status").status, 200);

  EXPECT_EQ(strangler::testing::httpRequest("127.0.0.1", port, "GET", "/other").status, 404);
  sync->signal(SIGTERM);
  EXPECT_EQ(sync->wait(seconds(10)), 0) << sync->output();
}

TEST(SyncStatusTest, RejectsABadStatusAddress) {
  strangler::testing::TempDir dir;
  const auto result = strangler::testing::runCommand(
      STRANGLER_CLI_BIN,
      {"sync", "watch", "--from", "sqlite3://db=" + dir.file("m.db"), "--to",
       "sqlite3://db=" + dir.file("s.db"), "--status-listen", "nowhere"},
      seconds(20));
  EXPECT_EQ(result.exit_code, 2) << result.output;
}

}  // namespace
}  // namespace strangler::cli
