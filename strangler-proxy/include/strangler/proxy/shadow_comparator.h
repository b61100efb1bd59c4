#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "strangler/proxy/shadow_sink.h"

namespace strangler::proxy {

class ShadowReplayLoop;

/// What one request of a shadow copy brought back: the answer, or why there is none.
struct ReplayOutcome {
  std::optional<CapturedResponse> answer;
  std::string error;
};

/// Bounds of the shadow stage. Memory is bounded by queue × (request + captured answer) and by
/// routes × max_diffs × diff entries of at most 2 × diff_body_bytes.
struct ShadowLimits {
  size_t queue = 1024;                         ///< copies waiting; more are dropped and counted
  size_t queue_bytes = 64u << 20;              ///< bytes waiting; more are dropped and counted
  int concurrency = 8;                         ///< copies in flight at once (one replay thread)
  size_t capture_bytes = kShadowCaptureBytes;  ///< larger answers are not compared
  size_t max_diffs = 50;                       ///< mismatches kept per route
  size_t diff_body_bytes = 4096;               ///< body bytes kept per side in a kept mismatch
  size_t recheck_queue = 256;      ///< mismatches waiting for a re-check; more: unchecked
  int recheck_timeout_ms = 10000;  ///< how long a re-check waits for the sync to catch up
};

/// The shadow stage: replays copies of requests the monolith served on the route's target from
/// a thread of its own (ShadowReplayLoop: many copies at once on non-blocking sockets, kept
/// alive per endpoint), off every client's path, then compares the two answers (response_diff.h),
/// after translating the target's answer through the route's ACL, and optionally filtering the
/// monolith's own noise.
///
/// On a route that carries data (`"data": MAPPING`), the target reads a copy the sync keeps, so
/// a mismatch may be only lag: the copy was a few milliseconds old. Such a mismatch is kept as
/// `pending` and re-checked by a thread of its own: it asks the monolith again, takes the end of
/// both change logs from the sync (`admin.sync_status_url`: GET …/positions), waits until the sync
/// has applied up to there (GET …/backlog), then asks the target again. Equal now (to that second
/// answer of the monolith or to a third one taken right after, for a row written meanwhile):
/// `lag`, which the gates leave out; still different: `real`. A mismatch that cannot be
/// re-checked (no sync status, the sync behind for longer than the timeout, a side not
/// answering) is `unchecked` and counts like a real one. Routes without data: always `real`.
class ShadowComparator : public ShadowSink {
 public:
  explicit ShadowComparator(ShadowLimits limits);
  ~ShadowComparator() override;
  ShadowComparator(const ShadowComparator&) = delete;
  ShadowComparator& operator=(const ShadowComparator&) = delete;

  bool offer(ShadowRequest request) override;
  void tooLarge(const std::string& route) override;
  void unanswered(const std::string& route) override;
  ShadowCounters counters(const std::string& route) const override;
  nlohmann::json diffs(const std::string& route) const override;
  void stop() override;

  /// Says why a pending mismatch of a route may not be re-checked now ("" when it may): asked
  /// before and while waiting for the sync. Set once, before the first offer.
  void setRecheckGuard(std::function<std::string(const std::string& route)> guard) {
    recheck_guard_ = std::move(guard);
  }

  /// Copies waiting (for tests and /metrics).
  size_t queued() const;

 private:
  /// What the offering event loops count and check, under offer_mutex_.
  struct OfferState {
    ShadowCounters counters;  ///< sampled, dropped (by reason), too_large, unanswered
    int inflight = 0;         ///< copies queued or being replayed
    double tokens = 0;        ///< shadow.max_rate's bucket
    std::chrono::steady_clock::time_point refilled;
  };
  /// What the comparisons found, under mutex_.
  struct RouteState {
    ShadowCounters counters;
    std::deque<nlohmann::json> diffs;  ///< newest first
  };
  class Replayer;  // blocking, for the re-checks
  /// A mismatch on a route that carries data, waiting to be re-checked.
  struct Recheck {
    ShadowRequest job;
    uint64_t id = 0;  ///< its entry in the route's diffs
    std::optional<CapturedResponse> monolith_again;
  };

  /// The next queued copy, for the replay loop.
  std::optional<ShadowRequest> take();
  /// A copy's answers are in (the target's, and the monolith's again for the noise filter).
  void compare(ShadowRequest&& job, std::vector<ReplayOutcome>&& outcomes);
  void record(ShadowRequest&& job, const CapturedResponse& target,
              const std::vector<std::string>& differences, bool target_error, bool as_bytes);
  void runRechecks();
  void recheckBatch(std::vector<Recheck>& batch, Replayer& replayer);
  /// Sets the class of mismatch `id` of `route` (and the figures), with what the re-check saw.
  void classify(const std::string& route, uint64_t id, const char* klass, nlohmann::json detail);
  /// Waits up to `ms` (or until stop()); false when stopping.
  bool pause(int ms);

  const ShadowLimits limits_;
  // Two locks, so that an event loop offering a copy never waits on the replay thread, which
  // runs at idle priority and could be preempted while holding a lock (priority inversion):
  // offer_mutex_ guards the queue and the offers' figures, and the replay thread takes it only
  // to swap the whole queue out (every 2 ms at most while busy); mutex_ guards the comparisons.
  mutable std::mutex offer_mutex_;
  std::deque<ShadowRequest> queue_;
  size_t queue_bytes_ = 0;
  size_t taken_ = 0;        ///< copies the replay thread took at its last swap
  size_t taken_bytes_ = 0;  ///< and their bytes
  bool closed_ = false;     ///< stop() was called: every offer is dropped
  std::map<std::string, OfferState, std::less<>> offers_;
  // The replay thread's own: the copies of its last swap, and copies finished since.
  std::deque<ShadowRequest> batch_;
  std::map<std::string, int> finished_;
  std::chrono::steady_clock::time_point last_swap_;
  mutable std::mutex mutex_;
  bool stopping_ = false;
  std::map<std::string, RouteState, std::less<>> routes_;
  std::unique_ptr<ShadowReplayLoop> loop_;
  uint64_t next_diff_id_ = 1;
  std::deque<Recheck> rechecks_;
  std::condition_variable recheck_wake_;
  std::thread recheck_thread_;
  std::function<std::string(const std::string&)> recheck_guard_;
};

}  // namespace strangler::proxy
