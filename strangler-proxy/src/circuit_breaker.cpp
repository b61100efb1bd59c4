#include "strangler/proxy/circuit_breaker.h"

namespace strangler::proxy {

CircuitBreaker::CircuitBreaker(CircuitBreakerConfig config) : config_(config) {}

bool CircuitBreaker::allow(Clock::time_point now) {
  std::lock_guard lock(mutex_);
  const auto open_for = std::chrono::milliseconds(config_.open_ms);
  switch (state_) {
    case State::kClosed:
      return true;
    case State::kOpen:
      if (now - opened_at_ < open_for) return false;
      state_ = State::kHalfOpen;
      probe_in_flight_ = true;
      probe_started_ = now;
      return true;
    case State::kHalfOpen:
      // A probe whose outcome was never reported (client gone) must not wedge the breaker.
      if (probe_in_flight_ && now - probe_started_ < open_for) return false;
      probe_in_flight_ = true;
      probe_started_ = now;
      return true;
  }
  return true;
}

void CircuitBreaker::onSuccess() {
  std::lock_guard lock(mutex_);
  failures_ = 0;
  if (state_ == State::kHalfOpen) {
    state_ = State::kClosed;
    probe_in_flight_ = false;
  }
}

void CircuitBreaker::onFailure(Clock::time_point now) {
  std::lock_guard lock(mutex_);
  if (state_ == State::kHalfOpen) {
    state_ = State::kOpen;
    opened_at_ = now;
    probe_in_flight_ = false;
    ++openings_;
    return;
  }
  if (state_ == State::kOpen) return;
  if (++failures_ >= config_.consecutive_failures) {
    state_ = State::kOpen;
    opened_at_ = now;
    failures_ = 0;
    ++openings_;
  }
}

CircuitBreaker::State CircuitBreaker::state(Clock::time_point now) const {
  std::lock_guard lock(mutex_);
  if (state_ == State::kOpen && now - opened_at_ >= std::chrono::milliseconds(config_.open_ms)) {
    return State::kHalfOpen;
  }
  return state_;
}

uint64_t CircuitBreaker::openings() const {
  std::lock_guard lock(mutex_);
  return openings_;
}

void CircuitBreaker::reconfigure(CircuitBreakerConfig config) {
  std::lock_guard lock(mutex_);
  config_ = config;
}

const char* circuitStateName(CircuitBreaker::State state) {
  switch (state) {
    case CircuitBreaker::State::kClosed:
      return "closed";
    case CircuitBreaker::State::kOpen:
      return "open";
    case CircuitBreaker::State::kHalfOpen:
      return "half_open";
  }
  return "closed";
}

}  // namespace strangler::proxy
