#include "driver_service/persistence/soci_driver_store.h"

#include <soci/soci.h>

namespace strangler::driver_service::persistence {
namespace {

using Int = long long;

const std::string kColumns =
    "id, name, phone, vehicle_plate, vehicle_model, status, lat, lng, location_updated_at,"
    " created_at, updated_at";

// Stored status names are the service side of the ACL's enum map (lower case).
const char* storedStatus(domain::DriverStatus status) {
  switch (status) {
    case domain::DriverStatus::kOffline:
      return "offline";
    case domain::DriverStatus::kAvailable:
      return "available";
    case domain::DriverStatus::kOnTrip:
      return "on_trip";
  }
  return "offline";
}

domain::DriverStatus statusFromStored(const std::string& text) {
  if (text == "available") return domain::DriverStatus::kAvailable;
  if (text == "on_trip") return domain::DriverStatus::kOnTrip;
  return domain::DriverStatus::kOffline;
}

struct DriverRow {
  Int id = 0;
  std::string name, phone, plate, model, status;
  double lat = 0, lng = 0;
  soci::indicator lat_ind = soci::i_null, lng_ind = soci::i_null;
  Int loc_at = 0;
  soci::indicator loc_at_ind = soci::i_null;
  Int created_at = 0, updated_at = 0;

  void bind(soci::details::prepare_temp_type& prep) {
    prep, soci::into(id), soci::into(name), soci::into(phone), soci::into(plate), soci::into(model),
        soci::into(status), soci::into(lat, lat_ind), soci::into(lng, lng_ind),
        soci::into(loc_at, loc_at_ind), soci::into(created_at), soci::into(updated_at);
  }
  domain::Driver toDomain() const {
    domain::Driver d;
    d.id = id;
    d.name = name;
    d.phone = phone;
    d.vehicle = {plate, model};
    d.status = statusFromStored(status);
    if (lat_ind == soci::i_ok && lng_ind == soci::i_ok) d.location = domain::Location{lat, lng};
    if (loc_at_ind == soci::i_ok) d.location_updated_at = loc_at;
    d.created_at = created_at;
    d.updated_at = updated_at;
    return d;
  }
};

template <typename BindUses>
std::vector<domain::Driver> fetch(soci::session& sql, const std::string& query, BindUses uses) {
  DriverRow row;
  soci::details::prepare_temp_type prep = (sql.prepare << query);
  row.bind(prep);
  uses(prep);
  soci::statement st(prep);
  st.execute();
  std::vector<domain::Driver> out;
  while (st.fetch())
    out.push_back(row.toDomain());
  return out;
}

// The values of one driver as bound parameters (kept alive for the statement's duration).
struct DriverParams {
  explicit DriverParams(const domain::Driver& d)
      : id(d.id),
        status(storedStatus(d.status)),
        lat(d.location ? d.location->lat : 0),
        lng(d.location ? d.location->lng : 0),
        loc_ind(d.location ? soci::i_ok : soci::i_null),
        loc_at(d.location_updated_at.value_or(0)),
        loc_at_ind(d.location_updated_at ? soci::i_ok : soci::i_null),
        created_at(d.created_at),
        updated_at(d.updated_at) {}
  Int id;
  std::string status;
  double lat, lng;
  soci::indicator loc_ind, loc_ind2 = loc_ind;
  Int loc_at;
  soci::indicator loc_at_ind;
  Int created_at, updated_at;
};

template <typename Fn>
auto guarded(Fn fn) {
  try {
    return fn();
  } catch (const soci::soci_error& e) {
    throw ports::StorageError(std::string("database error: ") + e.what());
  }
}

}  // namespace

void ensureSchema(common::SessionPool& pool) {
  guarded([&] {
    soci::session sql(pool.pool());
    const bool sqlite = pool.backend() == common::DbBackend::kSqlite3;
    const std::string id =
        sqlite ? "id INTEGER PRIMARY KEY AUTOINCREMENT" : "id BIGSERIAL PRIMARY KEY";
    const std::string real = sqlite ? "REAL" : "DOUBLE PRECISION";
    // The grid cells are derived by the database itself (generated columns), so every writer —
    // this store, the sync job — gets them right without knowing about them.
    const auto floor100 = [sqlite](const std::string& column) {
      return sqlite ? "CAST(" + column + " * 100 AS INTEGER) - (" + column + " * 100 < CAST(" +
                          column + " * 100 AS INTEGER))"
                    : "CAST(floor(" + column + " * 100) AS BIGINT)";
    };
    const std::string ddl =
        "CREATE TABLE IF NOT EXISTS drivers (" + id +
        ", name VARCHAR(100) NOT NULL, phone VARCHAR(32) NOT NULL,"
        " vehicle_plate VARCHAR(20) NOT NULL, vehicle_model VARCHAR(60) NOT NULL,"
        " status VARCHAR(16) NOT NULL CHECK (status IN ('offline', 'available', 'on_trip')),"
        " lat " +
        real + ", lng " + real +
        ", location_updated_at BIGINT,"
        " created_at BIGINT NOT NULL, updated_at BIGINT NOT NULL,"
        " cell_lat BIGINT GENERATED ALWAYS AS (" +
        floor100("lat") +
        ") STORED,"
        " cell_lng BIGINT GENERATED ALWAYS AS (" +
        floor100("lng") + ") STORED)";
    common::Transaction tx(sql, pool.backend(), common::Transaction::Mode::kWrite);
    sql << ddl;
    // The sync job may have created the table from the ACL mapping, without the grid: add it.
    int has_grid = 0;
    if (sqlite) {
      sql << "SELECT COUNT(*) FROM pragma_table_xinfo('drivers') WHERE name = 'cell_lat'",
          soci::into(has_grid);
    } else {
      sql << "SELECT COUNT(*) FROM information_schema.columns WHERE table_name = 'drivers'"
             " AND column_name = 'cell_lat' AND table_schema = current_schema()",
          soci::into(has_grid);
    }
    if (has_grid == 0) {
      // SQLite can only add VIRTUAL generated columns; they can be indexed all the same.
      const std::string kind = sqlite ? "VIRTUAL" : "STORED";
      sql << "ALTER TABLE drivers ADD COLUMN cell_lat BIGINT GENERATED ALWAYS AS (" +
                 floor100("lat") + ") " + kind;
      sql << "ALTER TABLE drivers ADD COLUMN cell_lng BIGINT GENERATED ALWAYS AS (" +
                 floor100("lng") + ") " + kind;
    }
    sql << "CREATE INDEX IF NOT EXISTS drivers_grid ON drivers (status, cell_lat, cell_lng)";
    tx.commit();
    return 0;
  });
}

domain::Driver SociDriverStore::insert(const domain::Driver& driver) {
  return guarded([&] {
    soci::session sql(pool_.pool());
    DriverParams p(driver);
    Int id = 0;
    sql << "INSERT INTO drivers (name, phone, vehicle_plate, vehicle_model, status, lat, lng,"
           " location_updated_at, created_at, updated_at) VALUES (:n, :p, :pl, :m, :s, :la, :lg,"
           " :lu, :c, :u) RETURNING id",
        soci::use(driver.name), soci::use(driver.phone), soci::use(driver.vehicle.plate),
        soci::use(driver.vehicle.model), soci::use(p.status), soci::use(p.lat, p.loc_ind),
        soci::use(p.lng, p.loc_ind2), soci::use(p.loc_at, p.loc_at_ind), soci::use(p.created_at),
        soci::use(p.updated_at), soci::into(id);
    auto stored = driver;
    stored.id = id;
    return stored;
  });
}

std::optional<domain::Driver> SociDriverStore::find(int64_t id) {
  return guarded([&]() -> std::optional<domain::Driver> {
    soci::session sql(pool_.pool());
    const Int key = id;
    auto rows = fetch(sql, "SELECT " + kColumns + " FROM drivers WHERE id = :id",
                      [&](auto& prep) { prep, soci::use(key); });
    if (rows.empty()) return std::nullopt;
    return rows.front();
  });
}

std::vector<domain::Driver> SociDriverStore::list(int64_t limit, int64_t offset) {
  return guarded([&] {
    soci::session sql(pool_.pool());
    const Int l = limit;
    const Int o = offset;
    return fetch(sql, "SELECT " + kColumns + " FROM drivers ORDER BY id LIMIT :l OFFSET :o",
                 [&](auto& prep) { prep, soci::use(l), soci::use(o); });
  });
}

int64_t SociDriverStore::count() {
  return guarded([&] {
    soci::session sql(pool_.pool());
    Int n = 0;
    sql << "SELECT COUNT(*) FROM drivers", soci::into(n);
    return static_cast<int64_t>(n);
  });
}

bool SociDriverStore::update(const domain::Driver& driver) {
  return guarded([&] {
    soci::session sql(pool_.pool());
    DriverParams p(driver);
    soci::statement st =
        (sql.prepare << "UPDATE drivers SET name = :n, phone = :p, vehicle_plate = :pl,"
                        " vehicle_model = :m, status = :s, lat = :la, lng = :lg,"
                        " location_updated_at = :lu, updated_at = :u WHERE id = :id",
         soci::use(driver.name), soci::use(driver.phone), soci::use(driver.vehicle.plate),
         soci::use(driver.vehicle.model), soci::use(p.status), soci::use(p.lat, p.loc_ind),
         soci::use(p.lng, p.loc_ind2), soci::use(p.loc_at, p.loc_at_ind), soci::use(p.updated_at),
         soci::use(p.id));
    st.execute(true);
    return st.get_affected_rows() > 0;
  });
}

std::vector<domain::Driver> SociDriverStore::availableIn(const domain::CellRange& cells) {
  return guarded([&] {
    soci::session sql(pool_.pool());
    const Int a = cells.min_lat, b = cells.max_lat, c = cells.min_lng, d = cells.max_lng;
    return fetch(sql,
                 "SELECT " + kColumns +
                     " FROM drivers WHERE status = 'available' AND cell_lat BETWEEN :a AND :b"
                     " AND cell_lng BETWEEN :c AND :d",
                 [&](auto& prep) { prep, soci::use(a), soci::use(b), soci::use(c), soci::use(d); });
  });
}

}  // namespace strangler::driver_service::persistence
