#include "monolith/notifier/log_notifier.h"

namespace strangler::monolith::notifier {

void LogNotifier::tripAssigned(const domain::Trip& trip, const domain::Driver& driver) {
  std::lock_guard lock(mutex_);
  out_ << "notify passenger " << trip.passenger_id << ": driver " << driver.name << " ("
       << driver.vehicle.plate << ") is on the way for trip " << trip.id << "\n";
}

void LogNotifier::invoiceIssued(const domain::Trip& trip, const domain::Invoice& invoice) {
  std::lock_guard lock(mutex_);
  out_ << "notify passenger " << trip.passenger_id << ": invoice " << invoice.id << " for trip "
       << trip.id << ", " << invoice.amount_cents << " " << invoice.currency << " cents\n";
}

}  // namespace strangler::monolith::notifier
