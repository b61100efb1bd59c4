#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <map>
#include <mutex>
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
};

/// The shadow stage: replays copies of requests the monolith served on the route's target from
/// its own threads (blocking HTTP/1.1 clients, kept alive per endpoint), off every client's
/// path, then compares the two answers (response_diff.h), after translating the target's answer
/// through the route's ACL, and optionally filtering the monolith's own noise.
class ShadowComparator : public ShadowSink {
 public:
  explicit ShadowComparator(ShadowLimits limits);
  ~ShadowComparator() override;
  ShadowComparator(const ShadowComparator&) = delete;
  ShadowComparator& operator=(const ShadowComparator&) = delete;

  bool offer(ShadowRequest request) override;
  void tooLarge(const std::string& route) override;
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

  void run();
  void process(ShadowRequest& job, Replayer& replayer);
  void record(const ShadowRequest& job, const CapturedResponse& target,
              const std::vector<std::string>& differences, bool target_error);

  const ShadowLimits limits_;
  mutable std::mutex mutex_;
  std::condition_variable wake_;
  std::deque<ShadowRequest> queue_;
  size_t queue_bytes_ = 0;
  bool stopping_ = false;
  int idle_ = 0;  ///< replay threads waiting for a copy
  std::map<std::string, RouteState, std::less<>> routes_;
  std::vector<std::thread> threads_;
};

}  // namespace strangler::proxy
