#include "monolith/domain/entities.h"

namespace strangler::monolith::domain {

const char* toString(DriverStatus status) {
  switch (status) {
    case DriverStatus::kOffline:
      return "offline";
    case DriverStatus::kAvailable:
      return "available";
    case DriverStatus::kOnTrip:
      return "on_trip";
  }
  return "offline";
}

std::optional<DriverStatus> driverStatusFromString(const std::string& text) {
  if (text == "offline") return DriverStatus::kOffline;
  if (text == "available") return DriverStatus::kAvailable;
  if (text == "on_trip") return DriverStatus::kOnTrip;
  return std::nullopt;
}

const char* toString(TripStatus status) {
  switch (status) {
    case TripStatus::kAssigned:
      return "assigned";
    case TripStatus::kCompleted:
      return "completed";
    case TripStatus::kCancelled:
      return "cancelled";
  }
  return "assigned";
}

const char* toString(InvoiceStatus status) {
  return status == InvoiceStatus::kPaid ? "paid" : "issued";
}

}  // namespace strangler::monolith::domain
