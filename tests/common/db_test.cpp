#include "strangler/common/db.h"

#include <gtest/gtest.h>
#include <soci/soci.h>

#include <thread>
#include <vector>

#include "strangler/testing/postgres.h"
#include "strangler/testing/temp_dir.h"

namespace strangler::common {
namespace {

TEST(ConnectionStringTest, ParsesSqliteForms) {
  auto full = parseConnectionString("sqlite3://db=monolith.db");
  ASSERT_TRUE(full.ok());
  EXPECT_EQ(full->backend, DbBackend::kSqlite3);
  EXPECT_EQ(full->params, "db=monolith.db");
  auto shorthand = parseConnectionString("sqlite3://monolith.db");
  ASSERT_TRUE(shorthand.ok());
  EXPECT_EQ(shorthand->params, "db=monolith.db");
}

TEST(ConnectionStringTest, ParsesPostgresKeyValueAndUri) {
  auto kv = parseConnectionString("postgresql://dbname=rideshare host=127.0.0.1 port=5432");
  ASSERT_TRUE(kv.ok());
  EXPECT_EQ(kv->backend, DbBackend::kPostgresql);
  EXPECT_EQ(kv->params, "dbname=rideshare host=127.0.0.1 port=5432");
  auto uri = parseConnectionString("postgresql://app@127.0.0.1:5432/rideshare");
  ASSERT_TRUE(uri.ok());
  EXPECT_EQ(uri->params, "postgresql://app@127.0.0.1:5432/rideshare");
}

TEST(ConnectionStringTest, RejectsUnknownSchemes) {
  auto bad = parseConnectionString("mysql://db=x");
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.error().message.find("mysql://db=x"), std::string::npos);
  EXPECT_FALSE(parseConnectionString("sqlite3://").ok());
}

TEST(TransactionTest, RollsBackUnlessCommitted) {
  testing::TempDir dir;
  auto target = parseConnectionString("sqlite3://db=" + dir.file("t.db"));
  ASSERT_TRUE(target.ok());
  SessionPool pool(*target, 2);
  soci::session sql(pool.pool());
  sql << "CREATE TABLE t (v INTEGER)";
  {
    Transaction tx(sql, pool.backend(), Transaction::Mode::kWrite);
    sql << "INSERT INTO t VALUES (1)";
  }
  {
    Transaction tx(sql, pool.backend(), Transaction::Mode::kWrite);
    sql << "INSERT INTO t VALUES (2)";
    tx.commit();
  }
  int count = 0;
  int sum = 0;
  sql << "SELECT COUNT(*), SUM(v) FROM t", soci::into(count), soci::into(sum);
  EXPECT_EQ(count, 1);
  EXPECT_EQ(sum, 2);
}

TEST(TransactionTest, ConcurrentSqliteWritersAllCommit) {
  testing::TempDir dir;
  auto target = parseConnectionString("sqlite3://db=" + dir.file("t.db"));
  ASSERT_TRUE(target.ok());
  SessionPool pool(*target, 4);
  {
    soci::session sql(pool.pool());
    sql << "CREATE TABLE counter (n INTEGER)";
    sql << "INSERT INTO counter VALUES (0)";
  }
  std::vector<std::thread> writers;
  for (int t = 0; t < 4; ++t) {
    writers.emplace_back([&] {
      for (int i = 0; i < 50; ++i) {
        soci::session sql(pool.pool());
        Transaction tx(sql, pool.backend(), Transaction::Mode::kWrite);
        int n = 0;
        sql << "SELECT n FROM counter", soci::into(n);
        sql << "UPDATE counter SET n = :n", soci::use(n + 1);
        tx.commit();
      }
    });
  }
  for (auto& writer : writers)
    writer.join();
  soci::session sql(pool.pool());
  int n = 0;
  sql << "SELECT n FROM counter", soci::into(n);
  EXPECT_EQ(n, 200);  // no lost update: the write lock is taken before the read
}

TEST(PostgresSessionTest, OpensLinkedBackendInThrowawaySchema) {
  STRANGLER_NEED_POSTGRES();
  testing::PostgresSchema schema(*testing::postgresDsn());
  auto target = parseConnectionString(schema.connectionString());
  ASSERT_TRUE(target.ok()) << target.error().message;
  SessionPool pool(*target, 1);
  soci::session sql(pool.pool());
  sql << "CREATE TABLE t (v INTEGER)";
  sql << "INSERT INTO t VALUES (41)";
  int v = 0;
  std::string schema_name;
  sql << "SELECT v + 1, current_schema() FROM t", soci::into(v), soci::into(schema_name);
  EXPECT_EQ(v, 42);
  EXPECT_EQ(schema_name, schema.name());
}

}  // namespace
}  // namespace strangler::common
