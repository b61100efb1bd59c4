#include "monolith/persistence/schema.h"

#include <soci/soci.h>

#include <string>

namespace strangler::monolith::persistence {

// The schema is deliberately "legacy": passengers and drivers share one `users` table told
// apart by a type code, coordinates are integer micro-degrees, money is integer cents, states
// are small ints and timestamps are epoch seconds. The anti-corruption layer translates this
// into the extracted services' own models.
void ensureSchema(soci::session& sql, common::DbBackend backend) {
  const std::string id_column = backend == common::DbBackend::kSqlite3
                                    ? "id INTEGER PRIMARY KEY AUTOINCREMENT"
                                    : "id BIGSERIAL PRIMARY KEY";
  common::Transaction tx(sql, backend, common::Transaction::Mode::kWrite);
  sql << "CREATE TABLE IF NOT EXISTS app_meta ("
         " meta_key VARCHAR(64) PRIMARY KEY,"
         " meta_value VARCHAR(255) NOT NULL)";
  sql << "CREATE TABLE IF NOT EXISTS users (" + id_column +
             ","
             " user_type SMALLINT NOT NULL,"  // 1 passenger, 2 driver
             " full_name VARCHAR(100) NOT NULL,"
             " phone VARCHAR(32) NOT NULL,"
             " email VARCHAR(200),"
             " car_plate VARCHAR(20),"
             " car_model VARCHAR(60),"
             " drv_status SMALLINT,"  // 0 offline, 1 available, 2 on trip
             " lat_e6 INTEGER,"
             " lng_e6 INTEGER,"
             " loc_updated_at BIGINT,"
             " created_at BIGINT NOT NULL,"
             " updated_at BIGINT NOT NULL)";
  sql << "CREATE INDEX IF NOT EXISTS users_dispatch ON users (user_type, drv_status, lat_e6)";
  sql << "CREATE TABLE IF NOT EXISTS trips (" + id_column +
             ","
             " passenger_id BIGINT NOT NULL REFERENCES users (id),"
             " driver_id BIGINT NOT NULL REFERENCES users (id),"
             " status SMALLINT NOT NULL,"  // 1 assigned, 2 completed, 3 cancelled
             " pickup_lat_e6 INTEGER NOT NULL,"
             " pickup_lng_e6 INTEGER NOT NULL,"
             " dropoff_lat_e6 INTEGER NOT NULL,"
             " dropoff_lng_e6 INTEGER NOT NULL,"
             " distance_m INTEGER NOT NULL,"
             " fare_cents INTEGER NOT NULL,"
             " requested_at BIGINT NOT NULL,"
             " completed_at BIGINT,"
             " updated_at BIGINT NOT NULL)";
  sql << "CREATE INDEX IF NOT EXISTS trips_by_driver ON trips (driver_id, status)";
  sql << "CREATE TABLE IF NOT EXISTS invoices (" + id_column +
             ","
             " trip_id BIGINT NOT NULL UNIQUE REFERENCES trips (id),"
             " passenger_id BIGINT NOT NULL REFERENCES users (id),"
             " amount_cents INTEGER NOT NULL,"
             " currency CHAR(3) NOT NULL,"
             " status SMALLINT NOT NULL,"  // 1 issued, 2 paid
             " issued_at BIGINT NOT NULL)";
  int existing = 0;
  sql << "SELECT COUNT(*) FROM app_meta WHERE meta_key = 'schema_version'", soci::into(existing);
  if (existing == 0) {
    const std::string version = std::to_string(kSchemaVersion);
    sql << "INSERT INTO app_meta (meta_key, meta_value) VALUES ('schema_version', :v)",
        soci::use(version);
  }
  tx.commit();
}

}  // namespace strangler::monolith::persistence
