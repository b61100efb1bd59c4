#pragma once

#include <chrono>
#include <map>
#include <mutex>
#include <string>

#include "driver_service/ports/ports.h"

namespace strangler::driver_service::monolith {

/// TripStats read from the monolith's legacy API (GET /api/drivers/{id} → completed_trips):
/// the "remote API" way for a new service to reach data it does not own. Each call has a short
/// timeout; on failure the last value seen for that driver is used (stale beats wrong), and
/// without one the answer is "unknown". Point it at the monolith itself, never at the proxy
/// (which may route driver paths back here).
class MonolithTripStats : public ports::TripStats {
 public:
  MonolithTripStats(std::string host, uint16_t port, std::chrono::milliseconds timeout);
  std::optional<int64_t> completedTrips(int64_t driver_id) override;

 private:
  std::string host_;
  uint16_t port_;
  std::chrono::milliseconds timeout_;
  std::mutex mutex_;
  std::map<int64_t, int64_t> last_seen_;
};

/// TripStats for a service run without a monolith: every driver has 0 completed trips.
class NoTripStats : public ports::TripStats {
 public:
  std::optional<int64_t> completedTrips(int64_t) override { return 0; }
};

}  // namespace strangler::driver_service::monolith
