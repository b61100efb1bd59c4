#include "strangler/testing/postgres.h"

#include <soci/postgresql/soci-postgresql.h>
#include <soci/soci.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <iostream>

namespace strangler::testing {

std::optional<std::string> postgresDsn() {
  const char* dsn = std::getenv("STRANGLER_PG_DSN");
  if (dsn == nullptr || *dsn == '\0') return std::nullopt;
  return std::string(dsn);
}

bool postgresRequired() {
  const char* flag = std::getenv("STRANGLER_REQUIRE_PG");
  return flag != nullptr && *flag != '\0' && std::string(flag) != "0";
}

PostgresSchema::PostgresSchema(const std::string& dsn) : dsn_(dsn) {
  static std::atomic<int> counter{0};
  const auto ticks = std::chrono::steady_clock::now().time_since_epoch().count();
  name_ = "t_" + std::to_string(getpid()) + "_" + std::to_string(counter++) + "_" +
          std::to_string(ticks % 1000000);
  soci::session admin(*soci::factory_postgresql(), dsn_);
  admin << "CREATE SCHEMA " + name_;
}

PostgresSchema::~PostgresSchema() {
  try {
    soci::session admin(*soci::factory_postgresql(), dsn_);
    admin << "DROP SCHEMA IF EXISTS " + name_ + " CASCADE";
    // Replication slots (logical capture) belong to the cluster, not the schema: drop the ones
    // named after it, or they keep WAL and take slots forever.
    admin << "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE"
             " slot_name LIKE '%\\_" +
                 name_ + "' AND NOT active";
  } catch (const std::exception& e) {
    std::cerr << "dropping test schema " << name_ << " failed: " << e.what() << "\n";
  }
}

std::string PostgresSchema::connectionString() const {
  return "postgresql://" + dsn_ + " options='-csearch_path=" + name_ + "'";
}

}  // namespace strangler::testing
