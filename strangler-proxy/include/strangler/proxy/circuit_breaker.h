#pragma once

#include <chrono>
#include <mutex>

#include "strangler/proxy/config.h"

namespace strangler::proxy {

/// Per-upstream circuit breaker: `consecutive_failures` failures in a row open it; after
/// `open_ms` it turns half-open and lets one probe through; the probe's success closes it, its
/// failure opens it again. Thread-safe; time is passed in so tests control it.
class CircuitBreaker {
 public:
  using Clock = std::chrono::steady_clock;
  enum class State { kClosed = 0, kOpen = 1, kHalfOpen = 2 };

  explicit CircuitBreaker(CircuitBreakerConfig config);

  /// Whether a request may go to the upstream now (in half-open: only the one probe).
  bool allow(Clock::time_point now);
  /// Reports a successful exchange.
  void onSuccess();
  /// Reports a failed exchange (connect error, timeout, 5xx).
  void onFailure(Clock::time_point now);
  /// The state as of `now` (open turns half-open once open_ms has passed).
  State state(Clock::time_point now) const;
  /// How many times it opened since it was created.
  uint64_t openings() const;
  /// Applies new thresholds (on reload) without forgetting the current state.
  void reconfigure(CircuitBreakerConfig config);

 private:
  mutable std::mutex mutex_;
  CircuitBreakerConfig config_;
  State state_ = State::kClosed;
  int failures_ = 0;
  uint64_t openings_ = 0;
  Clock::time_point opened_at_{};
  bool probe_in_flight_ = false;
  Clock::time_point probe_started_{};
};

/// "closed", "open" or "half_open".
const char* circuitStateName(CircuitBreaker::State state);

}  // namespace strangler::proxy
