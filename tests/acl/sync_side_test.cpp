// The sync's reads on the legacy table go by its key. The legacy users table has an index that
// starts with user_type, the constant that marks a driver: a planner that takes that index for
// "id IN (...) AND user_type = 2" walks every driver for each key set (it made a verify round
// at 1M rows as slow as a full pass). Side::whereConstants() hides the constants' indexes.
#include <gtest/gtest.h>

#include <string>

#include "sync_fixture.h"
#include "sync_side.h"

namespace strangler::acl::sync {
namespace {

using testing::TestDatabase;

// The plan SQLite picks for `query`, one line per step.
std::string plan(soci::session& sql, const std::string& query) {
  soci::rowset<soci::row> rows = (sql.prepare << "EXPLAIN QUERY PLAN " + query);
  std::string text;
  for (const auto& row : rows)
    text += row.get<std::string>(3) + "\n";
  return text;
}

TEST(SyncSideTest, ReadsOnTheLegacyTableGoByTheKeyNotByTheConstantsIndex) {
  strangler::testing::TempDir dir;
  TestDatabase monolith("sqlite3", dir, "monolith");
  monolith.seedMonolith(50);
  detail::Side side;
  side.target = common::parseConnectionString(monolith.conn()).value();
  side.sql = monolith.session();
  side.table = "users";
  side.key = "id";
  side.constants["user_type"] = Value(int64_t{2});
  // Same rows as the plain condition.
  EXPECT_EQ(monolith.scalar("SELECT COUNT(*) FROM users WHERE " + side.whereConstants()),
            monolith.scalar("SELECT COUNT(*) FROM users WHERE user_type = 2"));
  EXPECT_GT(monolith.scalar("SELECT COUNT(*) FROM users WHERE " + side.whereConstants()), 0);
  side.constants["full_name"] = Value(std::string("x"));  // a text constant too

  const std::string by_keys = "SELECT id FROM users WHERE id IN (3, 5, 8) AND ";
  const std::string by_range = "SELECT id FROM users WHERE id > 10 AND ";
  // The plain condition takes the constant's index (what this guards against).
  EXPECT_NE(plan(*side.sql, by_keys + "user_type = 2").find("users_dispatch"), std::string::npos);

  for (const auto& query :
       {by_keys + side.whereConstants(), by_range + side.whereConstants() + " ORDER BY id"}) {
    const std::string steps = plan(*side.sql, query);
    EXPECT_EQ(steps.find("users_dispatch"), std::string::npos) << query << "\n" << steps;
    EXPECT_EQ(steps.find("TEMP B-TREE"), std::string::npos) << query << "\n" << steps;
    EXPECT_NE(steps.find("INTEGER PRIMARY KEY"), std::string::npos) << query << "\n" << steps;
  }
}

}  // namespace
}  // namespace strangler::acl::sync
