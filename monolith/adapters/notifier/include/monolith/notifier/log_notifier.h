#pragma once

#include <mutex>
#include <ostream>

#include "monolith/ports/notifier.h"

namespace strangler::monolith::notifier {

/// Writes notifications as log lines (stands in for push/SMS in the reference app).
class LogNotifier : public ports::Notifier {
 public:
  explicit LogNotifier(std::ostream& out) : out_(out) {}
  void tripAssigned(const domain::Trip& trip, const domain::Driver& driver) override;
  void invoiceIssued(const domain::Trip& trip, const domain::Invoice& invoice) override;

 private:
  std::mutex mutex_;
  std::ostream& out_;
};

}  // namespace strangler::monolith::notifier
