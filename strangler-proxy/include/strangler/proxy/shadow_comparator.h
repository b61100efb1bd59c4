#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "strangler/proxy/shadow_sink.h"

namespace strangler::proxy {

/// Bounds of the shadow stage. Memory is bounded by queue × (request + captured answer) and by
/// routes × max_diffs × diff entries of at most 2 × diff_body_bytes.
struct ShadowLimits {
  size_t queue = 1024;                         ///< copies waiting; more are dropped and counted
  size_t queue_bytes = 64u << 20;              ///< bytes waiting; more are dropped and counted
  int concurrency = 4;                         ///< replay threads (each one replay at a time)
  size_t capture_bytes = kShadowCaptureBytes;  ///< larger answers are not compared
  size_t max_diffs = 50;                       ///< mismatches kept per route
  size_t diff_body_bytes = 4096;               ///< body bytes kept per side in a kept mismatch
  size_t recheck_queue = 256;      ///< mismatches waiting for a re-check; more: unchecked
  int recheck_timeout_ms = 10000;  ///< how long a re-check waits for the sync to catch up
};

/// The shadow stage: replays copies of requests the monolith served on the route's target from
/// its own threads (blocking HTTP/1.1 clients, kept alive per endpoint), off every client's
/// path, then compares the two answers (response_diff.h), after translating the target's answer
/// through the route's ACL, and optionally filtering the monolith's own noise.
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

  /// Copies waiting (for tests and /metrics).
  size_t queued() const;

 private:
  struct RouteState {
    ShadowCounters counters;
    int inflight = 0;   ///< copies queued or being replayed
    double tokens = 0;  ///< shadow.max_rate's bucket
    std::chrono::steady_clock::time_point refilled;
    std::deque<nlohmann::json> diffs;  ///< newest first
  };
  class Replayer;
  /// A mismatch on a route that carries data, waiting to be re-checked.
  struct Recheck {
    ShadowRequest job;
    uint64_t id = 0;  ///< its entry in the route's diffs
    std::optional<CapturedResponse> monolith_again;
  };

  void run();
  void process(ShadowRequest& job, Replayer& replayer);
  void record(ShadowRequest&& job, const CapturedResponse& target,
              const std::vector<std::string>& differences, bool target_error, bool as_bytes);
  void runRechecks();
  void recheckBatch(std::vector<Recheck>& batch, Replayer& replayer);
  /// Sets the class of mismatch `id` of `route` (and the figures), with what the re-check saw.
  void classify(const std::string& route, uint64_t id, const char* klass, nlohmann::json detail);
  /// Waits up to `ms` (or until stop()); false when stopping.
  bool pause(int ms);

  const ShadowLimits limits_;
  mutable std::mutex mutex_;
  std::condition_variable wake_;
  std::deque<ShadowRequest> queue_;
  size_t queue_bytes_ = 0;
  bool stopping_ = false;
  int idle_ = 0;  ///< replay threads waiting for a copy
  std::map<std::string, RouteState, std::less<>> routes_;
  std::vector<std::thread> threads_;
  uint64_t next_diff_id_ = 1;
  std::deque<Recheck> rechecks_;
  std::condition_variable recheck_wake_;
  std::thread recheck_thread_;
};

}  // namespace strangler::proxy
