#pragma once

#include <optional>
#include <string>

#include <gtest/gtest.h>

namespace strangler::testing {

/// The PostgreSQL server for tests, from STRANGLER_PG_DSN (libpq KEY=VALUE form, e.g.
/// "host=127.0.0.1 port=55432 user=pgtest dbname=postgres"); nullopt when unset.
std::optional<std::string> postgresDsn();

/// True when STRANGLER_REQUIRE_PG is set: PostgreSQL suites must then fail instead of skipping.
bool postgresRequired();

/// A throwaway schema on the test server; connection strings select it through search_path,
/// so parallel tests never see each other's tables. Dropped (CASCADE) on destruction.
class PostgresSchema {
 public:
  explicit PostgresSchema(const std::string& dsn);
  ~PostgresSchema();
  PostgresSchema(const PostgresSchema&) = delete;
  PostgresSchema& operator=(const PostgresSchema&) = delete;

  /// A SOCI connection string ("postgresql://... options='-csearch_path=NAME'").
  std::string connectionString() const;
  const std::string& name() const { return name_; }

 private:
  std::string dsn_;
  std::string name_;
};

}  // namespace strangler::testing

/// Skips the current test when no PostgreSQL server is configured, or fails it when one is
/// required (CI sets STRANGLER_REQUIRE_PG so these suites can never be skipped silently).
#define STRANGLER_NEED_POSTGRES()                                            \
  do {                                                                       \
    if (!::strangler::testing::postgresDsn()) {                              \
      if (::strangler::testing::postgresRequired())                          \
        FAIL() << "STRANGLER_REQUIRE_PG is set but STRANGLER_PG_DSN is not"; \
      GTEST_SKIP() << "STRANGLER_PG_DSN not set: PostgreSQL suite skipped";  \
    }                                                                        \
  } while (0)
