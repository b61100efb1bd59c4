#pragma once

#include "monolith/domain/rules.h"
#include "monolith/ports/clock.h"
#include "monolith/ports/notifier.h"
#include "monolith/ports/rideshare_service.h"
#include "monolith/ports/unit_of_work.h"

namespace strangler::monolith::application {

/// The RideShare use cases on top of the driven ports. Holds no state of its own, so one
/// instance serves every request thread.
class RideShareServiceImpl : public ports::RideShareService {
 public:
  RideShareServiceImpl(ports::UnitOfWork& uow, ports::Notifier& notifier, ports::Clock& clock,
                       domain::FareSchedule fares = {});

  ports::Result<domain::Passenger> registerPassenger(const ports::NewPassenger& request) override;
  ports::Result<domain::Passenger> passenger(int64_t id) override;
  ports::Result<ports::Listing<domain::Passenger>> passengers(const ports::Page& page) override;
  ports::Result<ports::DriverView> registerDriver(const ports::NewDriver& request) override;
  ports::Result<ports::DriverView> driver(int64_t id) override;
  ports::Result<ports::Listing<ports::DriverView>> drivers(const ports::Page& page) override;
  ports::Result<ports::DriverView> moveDriver(int64_t id, const domain::GeoPoint& at) override;
  ports::Result<ports::DriverView> setDriverStatus(int64_t id,
                                                   domain::DriverStatus status) override;
  ports::Result<std::vector<ports::NearbyDriver>> nearbyDrivers(const domain::GeoPoint& center,
                                                                double radius_m,
                                                                int64_t limit) override;
  ports::Result<ports::TripView> requestTrip(const ports::TripRequest& request) override;
  ports::Result<ports::TripView> trip(int64_t id) override;
  ports::Result<ports::TripView> completeTrip(int64_t id) override;
  ports::Result<domain::Invoice> invoice(int64_t id) override;
  bool healthy() override;

 private:
  ports::UnitOfWork& uow_;
  ports::Notifier& notifier_;
  ports::Clock& clock_;
  domain::FareSchedule fares_;
};

}  // namespace strangler::monolith::application
