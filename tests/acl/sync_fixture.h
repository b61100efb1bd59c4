#pragma once

// Shared by the sync tests: a seeded legacy monolith database and an empty service database,
// on SQLite files or throwaway PostgreSQL schemas.

#include <soci/soci.h>

#include <memory>
#include <string>

#include "monolith/application/demo_seeder.h"
#include "monolith/persistence/schema.h"
#include "monolith/persistence/soci_unit_of_work.h"
#include "strangler/common/db.h"
#include "strangler/testing/postgres.h"
#include "strangler/testing/temp_dir.h"

namespace strangler::acl::testing {

/// One database for a test: "sqlite3" (a file in `dir`) or "postgresql" (a throwaway schema).
class TestDatabase {
 public:
  TestDatabase(const std::string& engine, const strangler::testing::TempDir& dir,
               const std::string& name) {
    if (engine == "postgresql") {
      schema_ =
          std::make_unique<strangler::testing::PostgresSchema>(*strangler::testing::postgresDsn());
      conn_ = schema_->connectionString();
    } else {
      conn_ = "sqlite3://db=" + dir.file(name + ".db");
    }
    target_ = common::parseConnectionString(conn_).value();
  }
  const std::string& conn() const { return conn_; }
  /// "sqlite3" or "postgresql".
  std::string engine() const {
    return target_.backend == common::DbBackend::kSqlite3 ? "sqlite3" : "postgresql";
  }
  /// A new session on this database.
  std::unique_ptr<soci::session> session() const {
    auto s = std::make_unique<soci::session>();
    common::openSession(*s, target_);
    return s;
  }
  /// Creates the RideShare schema and seeds `n` drivers, passengers and trips.
  void seedMonolith(int n) const {
    common::SessionPool pool(target_, 2);
    {
      soci::session sql(pool.pool());
      monolith::persistence::ensureSchema(sql, pool.backend());
    }
    monolith::persistence::SociUnitOfWork uow(pool);
    monolith::application::seedDemoData(uow, n);
  }
  long long scalar(const std::string& query) const {
    auto s = session();
    long long v = 0;
    soci::indicator ind = soci::i_ok;
    *s << query, soci::into(v, ind);
    return ind == soci::i_ok ? v : 0;
  }
  void exec(const std::string& statement) const {
    auto s = session();
    *s << statement;
  }

 private:
  std::unique_ptr<strangler::testing::PostgresSchema> schema_;
  std::string conn_;
  common::DbTarget target_;
};

/// "sqlite3/postgresql" → {"sqlite3", "postgresql"}.
inline std::pair<std::string, std::string> enginePair(const std::string& param) {
  const auto slash = param.find('/');
  return {param.substr(0, slash), param.substr(slash + 1)};
}

}  // namespace strangler::acl::testing
