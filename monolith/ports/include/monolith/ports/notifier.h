#pragma once

#include "monolith/domain/entities.h"

namespace strangler::monolith::ports {

/// Tells people what happened (push, SMS, e-mail in a real deployment). Called after the
/// change is committed; implementations must not throw (a failed notification never undoes
/// a business change).
class Notifier {
 public:
  virtual ~Notifier() = default;
  /// A driver was assigned to the passenger's trip.
  virtual void tripAssigned(const domain::Trip& trip, const domain::Driver& driver) = 0;
  /// A trip ended and its invoice was issued.
  virtual void invoiceIssued(const domain::Trip& trip, const domain::Invoice& invoice) = 0;
};

}  // namespace strangler::monolith::ports
