#include "monolith/application/demo_seeder.h"

#include <array>
#include <cmath>
#include <random>
#include <string>

#include "monolith/domain/rules.h"

namespace strangler::monolith::application {
namespace {

// Fixed so that the same N always produces the same rows.
constexpr uint64_t kSeed = 20150519;
// 2026-01-01T00:00:00Z: seeded timestamps count from here, not from "now".
constexpr domain::EpochSeconds kSeedEpoch = 1767225600;
// Seoul City Hall; drivers and trips are spread around it.
constexpr double kCenterLat = 37.5665;
constexpr double kCenterLng = 126.9780;

constexpr std::array kFamilyNames{"Kim",  "Lee", "Park", "Choi", "Jung", "Kang", "Cho",  "Yoon",
                                  "Jang", "Lim", "Han",  "Oh",   "Seo",  "Shin", "Kwon", "Hwang"};
constexpr std::array kGivenNames{"Min-jun",  "Seo-yeon", "Ji-ho",   "Ha-eun", "Do-yun", "Ji-woo",
                                 "Eun-woo",  "Su-ah",    "Si-woo",  "Ye-jin", "Ju-won", "Yu-na",
                                 "Hyun-woo", "Chae-won", "Jae-min", "Da-eun"};
constexpr std::array kCarModels{"Hyundai Sonata", "Kia K5",          "Hyundai Grandeur",
                                "Kia Niro EV",    "Hyundai Ioniq 5", "Toyota Prius"};
constexpr std::array kPlateSyllables{"가", "나", "다", "라", "마", "바", "사", "아", "자", "하"};

// std::uniform_*_distribution differs between standard libraries; these mappings of the
// engine's raw output do not, which keeps seeded data identical everywhere.
class Dice {
 public:
  uint64_t below(uint64_t n) { return engine_() % n; }
  double unit() { return static_cast<double>(engine_() >> 11) / 9007199254740992.0; }
  double between(double lo, double hi) { return lo + (hi - lo) * unit(); }

 private:
  std::mt19937_64 engine_{kSeed};
};

domain::GeoPoint aroundCenter(Dice& dice, double radius_km) {
  const double lat = kCenterLat + dice.between(-1, 1) * radius_km / 111.0;
  const double lng = kCenterLng + dice.between(-1, 1) * radius_km / 88.0;
  return domain::GeoPoint::fromDegrees(lat, lng);
}

std::string personName(Dice& dice) {
  return std::string(kFamilyNames[dice.below(kFamilyNames.size())]) + " " +
         kGivenNames[dice.below(kGivenNames.size())];
}

std::string phoneNumber(Dice& dice) {
  return "+82-10-" + std::to_string(1000 + dice.below(9000)) + "-" +
         std::to_string(1000 + dice.below(9000));
}

}  // namespace

SeedReport seedDemoData(ports::UnitOfWork& uow, int64_t n) {
  SeedReport report;
  if (n <= 0) return report;
  uow.run(ports::UnitOfWork::Mode::kWrite, [&](ports::Repositories& repos) {
    if (repos.passengers().count() > 0 || repos.drivers().count() > 0) return false;
    Dice dice;
    const domain::FareSchedule fares;
    std::vector<int64_t> passenger_ids;
    std::vector<int64_t> driver_ids;
    for (int64_t i = 0; i < n; ++i) {
      domain::Passenger passenger;
      passenger.name = personName(dice);
      passenger.phone = phoneNumber(dice);
      passenger.email = "rider" + std::to_string(i + 1) + "@example.com";
      passenger.created_at = kSeedEpoch + i * 60;
      passenger_ids.push_back(repos.passengers().insert(passenger).id);
    }
    for (int64_t i = 0; i < n; ++i) {
      domain::Driver driver;
      driver.name = personName(dice);
      driver.phone = phoneNumber(dice);
      driver.vehicle.plate = std::to_string(10 + dice.below(90)) +
                             kPlateSyllables[dice.below(kPlateSyllables.size())] + " " +
                             std::to_string(1000 + dice.below(9000));
      driver.vehicle.model = kCarModels[dice.below(kCarModels.size())];
      // Four in five drivers are on shift, so trip requests find someone nearby.
      driver.status =
          dice.below(5) == 0 ? domain::DriverStatus::kOffline : domain::DriverStatus::kAvailable;
      driver.location = aroundCenter(dice, 8.0);
      driver.created_at = kSeedEpoch + i * 60;
      driver.location_updated_at = driver.created_at + 3600;
      driver.updated_at = *driver.location_updated_at;
      driver_ids.push_back(repos.drivers().insert(driver).id);
    }
    for (int64_t i = 0; i < n; ++i) {
      domain::Trip trip;
      trip.passenger_id = passenger_ids[dice.below(passenger_ids.size())];
      trip.driver_id = driver_ids[dice.below(driver_ids.size())];
      trip.status = domain::TripStatus::kCompleted;
      trip.pickup = aroundCenter(dice, 8.0);
      trip.dropoff = aroundCenter(dice, 12.0);
      trip.distance_m =
          static_cast<int64_t>(std::llround(domain::distanceMeters(trip.pickup, trip.dropoff)));
      trip.fare_cents = fares.fareCents(trip.distance_m);
      trip.requested_at = kSeedEpoch + 86400 + i * 300;
      trip.completed_at = trip.requested_at + 600 + static_cast<int64_t>(dice.below(1800));
      trip.updated_at = *trip.completed_at;
      trip = repos.trips().insert(trip);
      domain::Invoice invoice;
      invoice.trip_id = trip.id;
      invoice.passenger_id = trip.passenger_id;
      invoice.amount_cents = trip.fare_cents;
      invoice.currency = fares.currency;
      invoice.status =
          dice.below(10) == 0 ? domain::InvoiceStatus::kIssued : domain::InvoiceStatus::kPaid;
      invoice.issued_at = *trip.completed_at;
      repos.invoices().insert(invoice);
    }
    report = SeedReport{true, n, n, n};
    return true;
  });
  return report;
}

}  // namespace strangler::monolith::application
