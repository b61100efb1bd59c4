#include "strangler/proxy/route_holds.h"

#include <unistd.h>

#include <algorithm>
#include <thread>

namespace strangler::proxy {

RouteHold::RouteHold(std::string name, size_t workers)
    : name_(std::move(name)),
      slot_count_(std::max<size_t>(workers, 1)),
      in_flight_(new Slot[slot_count_]) {}

bool RouteHold::activeAt(Clock::time_point now) {
  if (!held_.load(std::memory_order_acquire)) return false;
  if (nanos(now) < expires_ns_.load(std::memory_order_acquire)) return true;
  // Time is up. Under the lock, so a hold refreshed at this very moment is not lost.
  std::lock_guard lock(mutex_);
  if (nanos(now) < expires_ns_.load(std::memory_order_acquire)) return held_.load();
  held_.store(false, std::memory_order_release);
  return false;
}

void RouteHold::beginUnsafe(size_t worker) {
  auto& slot = in_flight_[worker % slot_count_].value;
  slot.store(slot.load(std::memory_order_relaxed) + 1, std::memory_order_release);
}

void RouteHold::endUnsafe(size_t worker) {
  auto& slot = in_flight_[worker % slot_count_].value;
  slot.store(slot.load(std::memory_order_relaxed) - 1, std::memory_order_release);
}

int64_t RouteHold::inFlight() const {
  int64_t total = 0;
  for (size_t i = 0; i < slot_count_; ++i)
    total += in_flight_[i].value.load(std::memory_order_acquire);
  return std::max<int64_t>(total, 0);
}

void RouteHold::onParked() {
  waiting_.fetch_add(1, std::memory_order_acq_rel);
  held_total_.fetch_add(1, std::memory_order_relaxed);
}

void RouteHold::onUnparked(Clock::duration held, bool timed_out) {
  const int64_t held_ns = std::chrono::duration_cast<std::chrono::nanoseconds>(held).count();
  int64_t longest = max_held_ns_.load(std::memory_order_relaxed);
  while (held_ns > longest &&
         !max_held_ns_.compare_exchange_weak(longest, held_ns, std::memory_order_acq_rel)) {
  }
  if (timed_out) timeouts_total_.fetch_add(1, std::memory_order_relaxed);
  waiting_.fetch_sub(1, std::memory_order_acq_rel);
}

RouteHold::Status RouteHold::hold(std::chrono::milliseconds duration, Clock::time_point now) {
  {
    std::lock_guard lock(mutex_);
    const bool on = held_.load() && nanos(now) < expires_ns_.load();
    expires_ns_.store(nanos(now + duration), std::memory_order_release);
    if (!on) {
      // A new hold: its own pause figure, and requests parked by an older one are let go.
      max_held_ns_.store(0, std::memory_order_release);
      epoch_.fetch_add(1, std::memory_order_acq_rel);
      held_.store(true, std::memory_order_release);
    }
  }
  return status(now);
}

RouteHold::Released RouteHold::release() {
  std::lock_guard lock(mutex_);
  Released released;
  if (held_.load()) released.released = waiting();
  held_.store(false, std::memory_order_release);
  return released;
}

RouteHold::Status RouteHold::status(Clock::time_point now) {
  Status status;
  status.held = activeAt(now);
  if (status.held) {
    const int64_t left_ns = expires_ns_.load(std::memory_order_acquire) - nanos(now);
    status.expires_in_ms = std::max<int64_t>((left_ns + 999999) / 1000000, 0);
  }
  status.in_flight_unsafe = inFlight();
  status.waiting = waiting();
  return status;
}

int64_t RouteHold::maxHeldMs() const {
  const int64_t ns = max_held_ns_.load(std::memory_order_acquire);
  // A request parked at all was parked for more than 0 ms: round up.
  return (ns + 999999) / 1000000;
}

RouteHolds::RouteHolds(size_t workers) : workers_(workers) {}

RouteHold& RouteHolds::get(const std::string& name) {
  std::lock_guard lock(mutex_);
  auto& entry = holds_[name];
  if (!entry) entry = std::make_unique<RouteHold>(name, workers_);
  return *entry;
}

RouteHold* RouteHolds::find(const std::string& name) const {
  std::lock_guard lock(mutex_);
  const auto it = holds_.find(name);
  return it == holds_.end() ? nullptr : it->second.get();
}

RouteHold::Status RouteHolds::hold(const std::string& name, std::chrono::milliseconds duration) {
  return get(name).hold(duration, RouteHold::Clock::now());
}

RouteHold::Released RouteHolds::release(const std::string& name, std::chrono::milliseconds drain) {
  RouteHold* hold = find(name);
  if (hold == nullptr) return {};
  auto released = hold->release();
  wakeAll();
  const auto give_up = RouteHold::Clock::now() + drain;
  while (hold->waiting() > 0 && RouteHold::Clock::now() < give_up)
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  released.max_held_ms = hold->maxHeldMs();
  return released;
}

void RouteHolds::addWaker(int event_fd) {
  std::lock_guard lock(mutex_);
  wakers_.push_back(event_fd);
}

void RouteHolds::removeWaker(int event_fd) {
  std::lock_guard lock(mutex_);
  wakers_.erase(std::remove(wakers_.begin(), wakers_.end(), event_fd), wakers_.end());
}

void RouteHolds::wakeAll() {
  std::lock_guard lock(mutex_);
  const uint64_t one = 1;
  for (const int fd : wakers_) {
    [[maybe_unused]] const auto written = ::write(fd, &one, sizeof one);
  }
}

}  // namespace strangler::proxy
