#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

namespace strangler::proxy {

/// The write hold (fence) of one route name, shared by every worker and kept across reloads.
/// While it is on, new unsafe requests on the route are parked by the worker that read them;
/// once it is released or expires they are routed with the config in force then.
class RouteHold {
 public:
  using Clock = std::chrono::steady_clock;

  /// What GET /routes/NAME/hold reports.
  struct Status {
    bool held = false;
    int64_t expires_in_ms = 0;
    int64_t in_flight_unsafe = 0;
    int64_t waiting = 0;
  };
  /// What a release reports.
  struct Released {
    int64_t released = 0;     ///< requests parked when the hold was released
    int64_t max_held_ms = 0;  ///< the longest any request of the hold spent parked
  };

  RouteHold(std::string name, size_t workers);
  RouteHold(const RouteHold&) = delete;
  RouteHold& operator=(const RouteHold&) = delete;

  const std::string& name() const { return name_; }

  /// The request path's check, one atomic load: false means not held. True may still mean
  /// that the hold's time is up; activeAt() tells.
  bool flagged() const { return held_.load(std::memory_order_acquire); }
  /// True while the hold is on at `now`; switches off a hold whose time is up.
  bool activeAt(Clock::time_point now);
  /// Bumped by every hold that starts: a request parked under another epoch is released.
  uint64_t epoch() const { return epoch_.load(std::memory_order_acquire); }

  /// A worker admitted an unsafe request on the route (not held) / finished it. Each worker
  /// writes only its own slot, so this costs no contended write.
  void beginUnsafe(size_t worker);
  void endUnsafe(size_t worker);
  /// A worker parked a request / let one go after `held` (answered 503 when `timed_out`).
  void onParked();
  void onUnparked(Clock::duration held, bool timed_out);

  /// Starts the hold, or moves its expiry to `now + duration` when it is on already.
  Status hold(std::chrono::milliseconds duration, Clock::time_point now);
  /// Switches the hold off (the workers then release what they parked).
  Released release();
  /// The hold as the admin API shows it.
  Status status(Clock::time_point now);
  /// Requests parked right now, by every worker.
  int64_t waiting() const { return waiting_.load(std::memory_order_acquire); }
  /// The longest time a request of the current (or last) hold spent parked.
  int64_t maxHeldMs() const;
  /// Requests parked since start / answered 503 after waiting cutover.hold_ms.
  uint64_t heldTotal() const { return held_total_.load(std::memory_order_relaxed); }
  uint64_t timeoutsTotal() const { return timeouts_total_.load(std::memory_order_relaxed); }

 private:
  struct alignas(64) Slot {
    std::atomic<int64_t> value{0};
  };
  static int64_t nanos(Clock::time_point at) {
    return std::chrono::duration_cast<std::chrono::nanoseconds>(at.time_since_epoch()).count();
  }
  int64_t inFlight() const;

  const std::string name_;
  std::atomic<bool> held_{false};
  std::atomic<int64_t> expires_ns_{0};
  std::atomic<uint64_t> epoch_{0};
  std::atomic<int64_t> waiting_{0};
  std::atomic<int64_t> max_held_ns_{0};
  std::atomic<uint64_t> held_total_{0};
  std::atomic<uint64_t> timeouts_total_{0};
  size_t slot_count_;
  std::unique_ptr<Slot[]> in_flight_;  ///< one per worker
  std::mutex mutex_;                   ///< serializes hold, release and expiry
};

/// Every route's write hold, by route name; entries are created on first use and never
/// removed, so a hold survives reloads and the pointers a snapshot keeps stay valid.
class RouteHolds {
 public:
  /// `workers`: the event loops that will count in-flight requests.
  explicit RouteHolds(size_t workers);

  /// The hold of route `name`, created when new.
  RouteHold& get(const std::string& name);
  /// The hold of route `name` when one was ever created, or nullptr.
  RouteHold* find(const std::string& name) const;

  /// Starts or refreshes the hold of `name`.
  RouteHold::Status hold(const std::string& name, std::chrono::milliseconds duration);
  /// Releases the hold of `name`, wakes every loop and waits (up to `drain`) until they have
  /// let its parked requests go, so the report includes their parked time.
  RouteHold::Released release(const std::string& name, std::chrono::milliseconds drain);

  /// Loops register the eventfd that wakes them; release() writes to each.
  void addWaker(int event_fd);
  void removeWaker(int event_fd);
  /// Wakes every registered loop.
  void wakeAll();

 private:
  size_t workers_;
  mutable std::mutex mutex_;
  std::map<std::string, std::unique_ptr<RouteHold>, std::less<>> holds_;
  std::vector<int> wakers_;
};

}  // namespace strangler::proxy
