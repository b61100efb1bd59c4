#pragma once

#include "monolith/domain/entities.h"

namespace strangler::monolith::ports {

/// The current time (a port so tests control it).
class Clock {
 public:
  virtual ~Clock() = default;
  /// Seconds since the Unix epoch.
  virtual domain::EpochSeconds now() = 0;
};

}  // namespace strangler::monolith::ports
