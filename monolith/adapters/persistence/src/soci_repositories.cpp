#include "soci_repositories.h"

#include "monolith/persistence/schema.h"

#include <string>

namespace strangler::monolith::persistence {
namespace {

// SOCI binds 64-bit integers as long long; the domain uses int64_t.
using Int = long long;

constexpr int kPassengerType = 1;
constexpr int kDriverType = 2;

// ---- passengers ---------------------------------------------------------------------------

const std::string kPassengerColumns = "id, full_name, phone, email, created_at";

struct PassengerRow {
  Int id = 0;
  std::string name;
  std::string phone;
  std::string email;
  soci::indicator email_ind = soci::i_null;
  Int created_at = 0;

  void bind(soci::details::prepare_temp_type& prep) {
    prep, soci::into(id), soci::into(name), soci::into(phone), soci::into(email, email_ind),
        soci::into(created_at);
  }
  domain::Passenger toDomain() const {
    domain::Passenger p;
    p.id = id;
    p.name = name;
    p.phone = phone;
    if (email_ind == soci::i_ok) p.email = email;
    p.created_at = created_at;
    return p;
  }
};

// ---- drivers -----------------------------------------------------------------------------

const std::string kDriverColumns =
    "id, full_name, phone, car_plate, car_model, drv_status, lat_e6, lng_e6, loc_updated_at,"
    " created_at, updated_at";

struct DriverRow {
  Int id = 0;
  std::string name;
  std::string phone;
  std::string plate;
  soci::indicator plate_ind = soci::i_null;
  std::string model;
  soci::indicator model_ind = soci::i_null;
  int status = 0;
  soci::indicator status_ind = soci::i_null;
  Int lat = 0;
  soci::indicator lat_ind = soci::i_null;
  Int lng = 0;
  soci::indicator lng_ind = soci::i_null;
  Int loc_at = 0;
  soci::indicator loc_at_ind = soci::i_null;
  Int created_at = 0;
  Int updated_at = 0;

  void bind(soci::details::prepare_temp_type& prep) {
    prep, soci::into(id), soci::into(name), soci::into(phone), soci::into(plate, plate_ind),
        soci::into(model, model_ind), soci::into(status, status_ind), soci::into(lat, lat_ind),
        soci::into(lng, lng_ind), soci::into(loc_at, loc_at_ind), soci::into(created_at),
        soci::into(updated_at);
  }
  domain::Driver toDomain() const {
    domain::Driver d;
    d.id = id;
    d.name = name;
    d.phone = phone;
    if (plate_ind == soci::i_ok) d.vehicle.plate = plate;
    if (model_ind == soci::i_ok) d.vehicle.model = model;
    d.status = status_ind == soci::i_ok && status >= 0 && status <= 2
                   ? static_cast<domain::DriverStatus>(status)
                   : domain::DriverStatus::kOffline;
    if (lat_ind == soci::i_ok && lng_ind == soci::i_ok) d.location = domain::GeoPoint{lat, lng};
    if (loc_at_ind == soci::i_ok) d.location_updated_at = loc_at;
    d.created_at = created_at;
    d.updated_at = updated_at;
    return d;
  }
};

// ---- trips -------------------------------------------------------------------------------

const std::string kTripColumns =
    "id, passenger_id, driver_id, status, pickup_lat_e6, pickup_lng_e6, dropoff_lat_e6,"
    " dropoff_lng_e6, distance_m, fare_cents, requested_at, completed_at, updated_at";

struct TripRow {
  Int id = 0;
  Int passenger_id = 0;
  Int driver_id = 0;
  int status = 0;
  Int pickup_lat = 0;
  Int pickup_lng = 0;
  Int dropoff_lat = 0;
  Int dropoff_lng = 0;
  Int distance_m = 0;
  Int fare_cents = 0;
  Int requested_at = 0;
  Int completed_at = 0;
  soci::indicator completed_ind = soci::i_null;
  Int updated_at = 0;

  void bind(soci::details::prepare_temp_type& prep) {
    prep, soci::into(id), soci::into(passenger_id), soci::into(driver_id), soci::into(status),
        soci::into(pickup_lat), soci::into(pickup_lng), soci::into(dropoff_lat),
        soci::into(dropoff_lng), soci::into(distance_m), soci::into(fare_cents),
        soci::into(requested_at), soci::into(completed_at, completed_ind), soci::into(updated_at);
  }
  domain::Trip toDomain() const {
    domain::Trip t;
    t.id = id;
    t.passenger_id = passenger_id;
    t.driver_id = driver_id;
    t.status = status >= 1 && status <= 3 ? static_cast<domain::TripStatus>(status)
                                          : domain::TripStatus::kCancelled;
    t.pickup = {pickup_lat, pickup_lng};
    t.dropoff = {dropoff_lat, dropoff_lng};
    t.distance_m = distance_m;
    t.fare_cents = fare_cents;
    t.requested_at = requested_at;
    if (completed_ind == soci::i_ok) t.completed_at = completed_at;
    t.updated_at = updated_at;
    return t;
  }
};

// ---- invoices ----------------------------------------------------------------------------

const std::string kInvoiceColumns =
    "id, trip_id, passenger_id, amount_cents, currency, status, issued_at";

struct InvoiceRow {
  Int id = 0;
  Int trip_id = 0;
  Int passenger_id = 0;
  Int amount_cents = 0;
  std::string currency;
  int status = 0;
  Int issued_at = 0;

  void bind(soci::details::prepare_temp_type& prep) {
    prep, soci::into(id), soci::into(trip_id), soci::into(passenger_id), soci::into(amount_cents),
        soci::into(currency), soci::into(status), soci::into(issued_at);
  }
  domain::Invoice toDomain() const {
    domain::Invoice i;
    i.id = id;
    i.trip_id = trip_id;
    i.passenger_id = passenger_id;
    i.amount_cents = amount_cents;
    // CHAR(3) comes back padded on some engines.
    i.currency = currency.substr(0, currency.find_last_not_of(' ') + 1);
    i.status = status == 2 ? domain::InvoiceStatus::kPaid : domain::InvoiceStatus::kIssued;
    i.issued_at = issued_at;
    return i;
  }
};

// Runs a SELECT that yields rows of type Row; `bind_uses` adds the statement's parameters.
template <typename Row, typename BindUses>
std::vector<Row> fetchRows(soci::session& sql, const std::string& query, BindUses bind_uses) {
  Row row;
  soci::details::prepare_temp_type prep = (sql.prepare << query);
  row.bind(prep);
  bind_uses(prep);
  soci::statement st(prep);
  st.execute();
  std::vector<Row> rows;
  while (st.fetch())
    rows.push_back(row);
  return rows;
}

template <typename Row, typename BindUses>
std::optional<Row> fetchOne(soci::session& sql, const std::string& query, BindUses bind_uses) {
  auto rows = fetchRows<Row>(sql, query, bind_uses);
  if (rows.empty()) return std::nullopt;
  return rows.front();
}

Int affectedRows(soci::statement& st) {
  return static_cast<Int>(st.get_affected_rows());
}

}  // namespace

// ---- SociPassengerRepository -------------------------------------------------------------

domain::Passenger SociPassengerRepository::insert(const domain::Passenger& passenger) {
  Int id = 0;
  const Int created_at = passenger.created_at;
  const std::string email = passenger.email.value_or("");
  soci::indicator email_ind = passenger.email ? soci::i_ok : soci::i_null;
  sql_ << "INSERT INTO users (user_type, full_name, phone, email, created_at, updated_at)"
          " VALUES (:t, :n, :p, :e, :c, :u) RETURNING id",
      soci::use(kPassengerType), soci::use(passenger.name), soci::use(passenger.phone),
      soci::use(email, email_ind), soci::use(created_at), soci::use(created_at), soci::into(id);
  auto stored = passenger;
  stored.id = id;
  return stored;
}

std::optional<domain::Passenger> SociPassengerRepository::find(int64_t id) {
  const Int key = id;
  auto row = fetchOne<PassengerRow>(
      sql_, "SELECT " + kPassengerColumns + " FROM users WHERE id = :id AND user_type = :t",
      [&](auto& prep) { prep, soci::use(key), soci::use(kPassengerType); });
  if (!row) return std::nullopt;
  return row->toDomain();
}

std::vector<domain::Passenger> SociPassengerRepository::list(const ports::Page& page) {
  const Int limit = page.limit;
  const Int offset = page.offset;
  std::vector<domain::Passenger> result;
  for (const auto& row : fetchRows<PassengerRow>(
           sql_,
           "SELECT " + kPassengerColumns +
               " FROM users WHERE user_type = :t ORDER BY id LIMIT :l OFFSET :o",
           [&](auto& prep) {
             prep, soci::use(kPassengerType), soci::use(limit), soci::use(offset);
           })) {
    result.push_back(row.toDomain());
  }
  return result;
}

int64_t SociPassengerRepository::count() {
  Int n = 0;
  sql_ << "SELECT COUNT(*) FROM users WHERE user_type = :t", soci::use(kPassengerType),
      soci::into(n);
  return n;
}

// ---- SociDriverRepository ----------------------------------------------------------------

domain::Driver SociDriverRepository::insert(const domain::Driver& driver) {
  Int id = 0;
  const int status = static_cast<int>(driver.status);
  const Int lat = driver.location ? driver.location->lat_e6 : 0;
  const Int lng = driver.location ? driver.location->lng_e6 : 0;
  soci::indicator loc_ind = driver.location ? soci::i_ok : soci::i_null;
  const Int loc_at = driver.location_updated_at.value_or(0);
  soci::indicator loc_at_ind = driver.location_updated_at ? soci::i_ok : soci::i_null;
  const Int created_at = driver.created_at;
  const Int updated_at = driver.updated_at;
  sql_ << "INSERT INTO users (user_type, full_name, phone, car_plate, car_model, drv_status,"
          " lat_e6, lng_e6, loc_updated_at, created_at, updated_at) VALUES (:t, :n, :p, :plate,"
          " :model, :s, :lat, :lng, :la, :c, :u) RETURNING id",
      soci::use(kDriverType), soci::use(driver.name), soci::use(driver.phone),
      soci::use(driver.vehicle.plate), soci::use(driver.vehicle.model), soci::use(status),
      soci::use(lat, loc_ind), soci::use(lng, loc_ind), soci::use(loc_at, loc_at_ind),
      soci::use(created_at), soci::use(updated_at), soci::into(id);
  auto stored = driver;
  stored.id = id;
  return stored;
}

std::optional<domain::Driver> SociDriverRepository::find(int64_t id) {
  const Int key = id;
  auto row = fetchOne<DriverRow>(
      sql_, "SELECT " + kDriverColumns + " FROM users WHERE id = :id AND user_type = :t",
      [&](auto& prep) { prep, soci::use(key), soci::use(kDriverType); });
  if (!row) return std::nullopt;
  return row->toDomain();
}

std::vector<domain::Driver> SociDriverRepository::list(const ports::Page& page) {
  const Int limit = page.limit;
  const Int offset = page.offset;
  std::vector<domain::Driver> result;
  for (const auto& row :
       fetchRows<DriverRow>(sql_,
                            "SELECT " + kDriverColumns +
                                " FROM users WHERE user_type = :t ORDER BY id LIMIT :l OFFSET :o",
                            [&](auto& prep) {
                              prep, soci::use(kDriverType), soci::use(limit), soci::use(offset);
                            })) {
    result.push_back(row.toDomain());
  }
  return result;
}

int64_t SociDriverRepository::count() {
  Int n = 0;
  sql_ << "SELECT COUNT(*) FROM users WHERE user_type = :t", soci::use(kDriverType), soci::into(n);
  return n;
}

bool SociDriverRepository::updateLocation(int64_t id, const domain::GeoPoint& at,
                                          domain::EpochSeconds now) {
  const Int key = id;
  const Int lat = at.lat_e6;
  const Int lng = at.lng_e6;
  const Int when = now;
  soci::statement st = (sql_.prepare << "UPDATE users SET lat_e6 = :lat, lng_e6 = :lng,"
                                        " loc_updated_at = :a, updated_at = :u"
                                        " WHERE id = :id AND user_type = :t",
                        soci::use(lat), soci::use(lng), soci::use(when), soci::use(when),
                        soci::use(key), soci::use(kDriverType));
  st.execute(true);
  return affectedRows(st) > 0;
}

bool SociDriverRepository::updateStatus(int64_t id, domain::DriverStatus status,
                                        domain::EpochSeconds now) {
  const Int key = id;
  const int code = static_cast<int>(status);
  const Int when = now;
  soci::statement st = (sql_.prepare << "UPDATE users SET drv_status = :s, updated_at = :u"
                                        " WHERE id = :id AND user_type = :t",
                        soci::use(code), soci::use(when), soci::use(key), soci::use(kDriverType));
  st.execute(true);
  return affectedRows(st) > 0;
}

bool SociDriverRepository::tryReserve(int64_t id, domain::EpochSeconds now) {
  const Int key = id;
  const Int when = now;
  const int on_trip = static_cast<int>(domain::DriverStatus::kOnTrip);
  const int available = static_cast<int>(domain::DriverStatus::kAvailable);
  // The status check in the WHERE clause makes the reservation atomic on every engine: of two
  // concurrent requests for the same driver, exactly one updates a row.
  soci::statement st = (sql_.prepare << "UPDATE users SET drv_status = :s, updated_at = :u"
                                        " WHERE id = :id AND user_type = :t AND drv_status = :a",
                        soci::use(on_trip), soci::use(when), soci::use(key), soci::use(kDriverType),
                        soci::use(available));
  st.execute(true);
  return affectedRows(st) == 1;
}

std::vector<domain::Driver> SociDriverRepository::findAvailableIn(const domain::BoundingBox& box,
                                                                  int64_t limit) {
  const Int min_lat = box.min_lat_e6;
  const Int max_lat = box.max_lat_e6;
  const Int min_lng = box.min_lng_e6;
  const Int max_lng = box.max_lng_e6;
  const Int max_rows = limit;
  const int available = static_cast<int>(domain::DriverStatus::kAvailable);
  std::vector<domain::Driver> result;
  for (const auto& row : fetchRows<DriverRow>(
           sql_,
           "SELECT " + kDriverColumns +
               " FROM users WHERE user_type = :t AND drv_status = :s"
               " AND lat_e6 BETWEEN :la AND :lb AND lng_e6 BETWEEN :ga AND :gb"
               " ORDER BY id LIMIT :l",
           [&](auto& prep) {
             prep, soci::use(kDriverType), soci::use(available), soci::use(min_lat),
                 soci::use(max_lat), soci::use(min_lng), soci::use(max_lng), soci::use(max_rows);
           })) {
    result.push_back(row.toDomain());
  }
  return result;
}

// ---- SociTripRepository ------------------------------------------------------------------

domain::Trip SociTripRepository::insert(const domain::Trip& trip) {
  Int id = 0;
  const Int passenger_id = trip.passenger_id;
  const Int driver_id = trip.driver_id;
  const int status = static_cast<int>(trip.status);
  const Int pickup_lat = trip.pickup.lat_e6;
  const Int pickup_lng = trip.pickup.lng_e6;
  const Int dropoff_lat = trip.dropoff.lat_e6;
  const Int dropoff_lng = trip.dropoff.lng_e6;
  const Int distance = trip.distance_m;
  const Int fare = trip.fare_cents;
  const Int requested_at = trip.requested_at;
  const Int completed_at = trip.completed_at.value_or(0);
  soci::indicator completed_ind = trip.completed_at ? soci::i_ok : soci::i_null;
  const Int updated_at = trip.updated_at;
  sql_ << "INSERT INTO trips (passenger_id, driver_id, status, pickup_lat_e6, pickup_lng_e6,"
          " dropoff_lat_e6, dropoff_lng_e6, distance_m, fare_cents, requested_at, completed_at,"
          " updated_at) VALUES (:p, :d, :s, :pa, :pg, :da, :dg, :m, :f, :r, :c, :u) RETURNING id",
      soci::use(passenger_id), soci::use(driver_id), soci::use(status), soci::use(pickup_lat),
      soci::use(pickup_lng), soci::use(dropoff_lat), soci::use(dropoff_lng), soci::use(distance),
      soci::use(fare), soci::use(requested_at), soci::use(completed_at, completed_ind),
      soci::use(updated_at), soci::into(id);
  auto stored = trip;
  stored.id = id;
  return stored;
}

std::optional<domain::Trip> SociTripRepository::find(int64_t id) {
  const Int key = id;
  auto row = fetchOne<TripRow>(sql_, "SELECT " + kTripColumns + " FROM trips WHERE id = :id",
                               [&](auto& prep) { prep, soci::use(key); });
  if (!row) return std::nullopt;
  return row->toDomain();
}

bool SociTripRepository::markCompleted(int64_t id, domain::EpochSeconds now) {
  const Int key = id;
  const Int when = now;
  const int completed = static_cast<int>(domain::TripStatus::kCompleted);
  const int assigned = static_cast<int>(domain::TripStatus::kAssigned);
  soci::statement st =
      (sql_.prepare << "UPDATE trips SET status = :s, completed_at = :c, updated_at = :u"
                       " WHERE id = :id AND status = :a",
       soci::use(completed), soci::use(when), soci::use(when), soci::use(key), soci::use(assigned));
  st.execute(true);
  return affectedRows(st) == 1;
}

int64_t SociTripRepository::countCompletedByDriver(int64_t driver_id) {
  const Int key = driver_id;
  const int completed = static_cast<int>(domain::TripStatus::kCompleted);
  Int n = 0;
  sql_ << "SELECT COUNT(*) FROM trips WHERE driver_id = :d AND status = :s", soci::use(key),
      soci::use(completed), soci::into(n);
  return n;
}

// ---- SociInvoiceRepository ---------------------------------------------------------------

domain::Invoice SociInvoiceRepository::insert(const domain::Invoice& invoice) {
  Int id = 0;
  const Int trip_id = invoice.trip_id;
  const Int passenger_id = invoice.passenger_id;
  const Int amount = invoice.amount_cents;
  const int status = static_cast<int>(invoice.status);
  const Int issued_at = invoice.issued_at;
  sql_ << "INSERT INTO invoices (trip_id, passenger_id, amount_cents, currency, status, issued_at)"
          " VALUES (:t, :p, :a, :c, :s, :i) RETURNING id",
      soci::use(trip_id), soci::use(passenger_id), soci::use(amount), soci::use(invoice.currency),
      soci::use(status), soci::use(issued_at), soci::into(id);
  auto stored = invoice;
  stored.id = id;
  return stored;
}

std::optional<domain::Invoice> SociInvoiceRepository::find(int64_t id) {
  const Int key = id;
  auto row =
      fetchOne<InvoiceRow>(sql_, "SELECT " + kInvoiceColumns + " FROM invoices WHERE id = :id",
                           [&](auto& prep) { prep, soci::use(key); });
  if (!row) return std::nullopt;
  return row->toDomain();
}

std::optional<domain::Invoice> SociInvoiceRepository::findByTrip(int64_t trip_id) {
  const Int key = trip_id;
  auto row =
      fetchOne<InvoiceRow>(sql_, "SELECT " + kInvoiceColumns + " FROM invoices WHERE trip_id = :t",
                           [&](auto& prep) { prep, soci::use(key); });
  if (!row) return std::nullopt;
  return row->toDomain();
}

}  // namespace strangler::monolith::persistence
