// The sync's bulk writers (row_io.h) on every engine pair: text that COPY's and SQL's quoting
// must carry exactly, through every way rows are written (the snapshot's copy straight into the
// table, the staged upsert of some columns, a whole row that already exists, the reverse stream
// into the legacy table, a forced reverse snapshot), and the snapshot's progress reports.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "strangler/acl/sync_engine.h"
#include "sync_fixture.h"

namespace strangler::acl::sync {
namespace {

using testing::TestDatabase;

// Tabs, newlines, carriage returns, backslashes (also as COPY's own escapes \N, \t, \\ and a
// lone trailing one), quotes, braces, commas, "NULL" and multi-byte UTF-8.
const std::vector<std::string>& hostileTexts() {
  static const std::vector<std::string> texts = {
      "tab\there\nnew line\r\ncrlf",
      "\\N",
      R"(back\slash \t \n \\ \N {a,b} "q" 'O''Brien' trailing\)",
      "NULL",
      "\t\n\\.\n",
      "김민준 · Ωμέγα · 🚕",
  };
  return texts;
}

// A literal for either engine: quotes doubled, nothing else (standard strings on both).
std::string literal(const std::string& text) {
  std::string out = "'";
  for (char c : text)
    out += c == '\'' ? std::string("''") : std::string(1, c);
  return out + "'";
}

class RowIoTest : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    const auto [from, to] = testing::enginePair(GetParam());
    if (from == "postgresql" || to == "postgresql") STRANGLER_NEED_POSTGRES();
    monolith_ = std::make_unique<TestDatabase>(from, dir_, "monolith");
    service_ = std::make_unique<TestDatabase>(to, dir_, "service");
    monolith_->seedMonolith(300);
  }

  std::unique_ptr<SyncEngine> open(SyncOptions options = {}) {
    auto engine = SyncEngine::open(monolith_->conn(), service_->conn(), "drivers", options);
    EXPECT_TRUE(engine.ok()) << engine.error().message;
    return engine.ok() ? std::move(engine.value()) : nullptr;
  }

  static void run(SyncEngine& engine) {
    auto report = engine.run();
    ASSERT_TRUE(report.ok()) << report.error().message;
  }

  static void expectIdentical(SyncEngine& engine) {
    auto report = engine.verify();
    ASSERT_TRUE(report.ok()) << report.error().message;
    EXPECT_TRUE(report->identical()) << report->differing_ranges << " ranges differ";
  }

  static std::string text(const TestDatabase& db, const std::string& query) {
    auto sql = db.session();
    std::string value;
    soci::indicator ind = soci::i_null;
    *sql << query, soci::into(value, ind);
    return ind == soci::i_ok ? value : "<null>";
  }

  std::string serviceName(int id) const {
    return text(*service_, "SELECT name FROM drivers WHERE id = " + std::to_string(id));
  }
  std::string monolithName(int id) const {
    return text(*monolith_, "SELECT full_name FROM users WHERE id = " + std::to_string(id));
  }

  strangler::testing::TempDir dir_;
  std::unique_ptr<TestDatabase> monolith_;
  std::unique_ptr<TestDatabase> service_;
};

TEST_P(RowIoTest, HostileTextArrivesExactlyThroughEveryWritePath) {
  const auto& texts = hostileTexts();
  const int n = static_cast<int>(texts.size());
  // The snapshot: whole new rows (PostgreSQL: COPY straight into the service table).
  for (int i = 0; i < n; ++i) {
    monolith_->exec("UPDATE users SET full_name = " + literal(texts[i]) + ", car_model = " +
                    literal(texts[n - 1 - i]) + " WHERE id = " + std::to_string(301 + i));
  }
  auto engine = open();
  ASSERT_TRUE(engine);
  run(*engine);
  for (int i = 0; i < n; ++i) {
    EXPECT_EQ(serviceName(301 + i), texts[i]) << "snapshot, text " << i;
    EXPECT_EQ(
        text(*service_, "SELECT vehicle_model FROM drivers WHERE id = " + std::to_string(301 + i)),
        texts[n - 1 - i])
        << "snapshot, text " << i;
  }

  // Captured updates of one column: the upsert of that column (PostgreSQL: staged).
  for (int i = 0; i < n; ++i) {
    monolith_->exec("UPDATE users SET full_name = " + literal(texts[n - 1 - i]) +
                    " WHERE id = " + std::to_string(301 + i));
  }
  // A driver leaving the mapping and coming back: a whole-row change to a row the service has
  // (PostgreSQL: the direct copy meets the key and falls back to the staged upsert).
  monolith_->exec("UPDATE users SET user_type = 1 WHERE id = 320");
  monolith_->exec("UPDATE users SET user_type = 2, full_name = " + literal(texts[0]) +
                  " WHERE id = 320");
  // A new driver: a whole new row.
  monolith_->exec(
      "INSERT INTO users (id, user_type, full_name, phone, car_plate, car_model, drv_status,"
      " created_at, updated_at) VALUES (5000, 2, " +
      literal(texts[2]) + ", '+82-10-1', " + literal(texts[1]) + ", 'K5', 0, 1, 1)");
  run(*engine);
  for (int i = 0; i < n; ++i)
    EXPECT_EQ(serviceName(301 + i), texts[n - 1 - i]) << "column update, text " << i;
  EXPECT_EQ(serviceName(320), texts[0]);
  EXPECT_EQ(serviceName(5000), texts[2]);
  EXPECT_EQ(text(*service_, "SELECT vehicle_plate FROM drivers WHERE id = 5000"), texts[1]);
  expectIdentical(*engine);

  // The reverse stream into the legacy table (PostgreSQL: INTEGER columns, so staged).
  ASSERT_TRUE(engine->flip(false).ok());
  for (int i = 0; i < n; ++i) {
    service_->exec("UPDATE drivers SET name = " + literal(texts[i]) +
                   " WHERE id = " + std::to_string(330 + i));
  }
  run(*engine);
  for (int i = 0; i < n; ++i)
    EXPECT_EQ(monolithName(330 + i), texts[i]) << "reverse stream, text " << i;
  expectIdentical(*engine);
}

TEST_P(RowIoTest, ForcedFlipCopiesHostileTextOverExistingLegacyRows) {
  auto engine = open();
  ASSERT_TRUE(engine);
  run(*engine);
  const auto& texts = hostileTexts();
  for (std::size_t i = 0; i < texts.size(); ++i) {
    service_->exec("UPDATE drivers SET name = " + literal(texts[i]) +
                   " WHERE id = " + std::to_string(340 + i));
  }
  monolith_->exec("UPDATE users SET drv_status = 9 WHERE id = 310");  // untranslatable
  run(*engine);
  // Every service row is copied over the monolith's: all of them exist there.
  auto forced = engine->flip(false, true);
  ASSERT_TRUE(forced.ok()) << forced.error().message;
  for (std::size_t i = 0; i < texts.size(); ++i)
    EXPECT_EQ(monolithName(340 + static_cast<int>(i)), texts[i]) << "text " << i;
  EXPECT_EQ(monolith_->scalar("SELECT drv_status FROM users WHERE id = 310"), 1);
  expectIdentical(*engine);
}

TEST_P(RowIoTest, SnapshotReportsProgressWithRateAndTotal) {
  std::vector<Progress> reports;
  SyncOptions options;
  options.chunk_rows = 64;
  options.on_progress = [&](const Progress& p) { reports.push_back(p); };
  auto engine = open(options);
  ASSERT_TRUE(engine);
  run(*engine);
  ASSERT_EQ(reports.size(), 5u);  // 300 rows in chunks of 64
  for (std::size_t i = 0; i < reports.size(); ++i) {
    EXPECT_EQ(reports[i].rows_total, 300);
    EXPECT_EQ(reports[i].rows_done, std::min<int64_t>(300, 64 * static_cast<int64_t>(i + 1)));
    EXPECT_GT(reports[i].rows_per_second, 0);  // what an ETA is computed from
  }
}

INSTANTIATE_TEST_SUITE_P(Engines, RowIoTest,
                         ::testing::Values("sqlite3/sqlite3", "postgresql/postgresql",
                                           "sqlite3/postgresql", "postgresql/sqlite3"),
                         [](const auto& param_info) {
                           auto name = param_info.param;
                           name.replace(name.find('/'), 1, "_to_");
                           return name;
                         });

}  // namespace
}  // namespace strangler::acl::sync
