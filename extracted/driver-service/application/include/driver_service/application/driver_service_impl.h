#pragma once

#include <mutex>

#include "driver_service/ports/ports.h"

namespace strangler::driver_service::application {

/// The driver use cases on the service's own store.
class DriverServiceImpl : public ports::DriverService {
 public:
  DriverServiceImpl(ports::DriverStore& store, ports::TripStats& stats, ports::Clock& clock)
      : store_(store), stats_(stats), clock_(clock) {}

  common::Result<domain::Driver> registerDriver(const ports::Registration& request) override;
  common::Result<domain::Driver> driver(int64_t id) override;
  common::Result<std::pair<std::vector<domain::Driver>, int64_t>> drivers(int64_t limit,
                                                                          int64_t offset) override;
  common::Result<domain::Driver> moveDriver(int64_t id, const domain::Location& at) override;
  common::Result<domain::Driver> setStatus(int64_t id, domain::DriverStatus status) override;
  common::Result<std::vector<ports::NearbyDriver>> nearby(const domain::Location& center,
                                                          double radius_m, int64_t limit) override;
  std::optional<int64_t> completedTrips(int64_t id) override { return stats_.completedTrips(id); }
  bool healthy() override;

 private:
  ports::DriverStore& store_;
  ports::TripStats& stats_;
  ports::Clock& clock_;
  // Read-modify-write of one driver must not interleave with another on the same process.
  std::mutex write_mutex_;
};

}  // namespace strangler::driver_service::application
