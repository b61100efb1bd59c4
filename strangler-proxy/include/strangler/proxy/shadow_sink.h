#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>

#include <nlohmann/json.hpp>

#include "strangler/proxy/response_diff.h"
#include "strangler/proxy/router.h"

namespace strangler::proxy {

struct Runtime;

/// Answers larger than this are not captured for comparison (counted as too_large).
inline constexpr size_t kShadowCaptureBytes = 1u << 20;

/// A request the client was served by the monolith for, with the monolith's answer, to be
/// replayed on the route's target and compared (the shadow stage). Owned copies: the sink keeps
/// it past the request.
struct ShadowRequest {
  std::shared_ptr<const Runtime> runtime;  ///< the snapshot the request was routed with
  const RouteConfig* route = nullptr;      ///< in runtime->config
  std::string method;
  std::string target_path;  ///< as sent to the target (rewritten)
  std::string monolith_upstream;
  std::string monolith_path;  ///< as sent to the monolith
  std::string query;
  bool has_query = false;
  HeaderList headers;  ///< end-to-end request headers as the client sent them
  std::string body;
  CapturedResponse monolith;  ///< what the client got

  /// Bytes this copy holds, for the queue's memory bound.
  size_t bytes() const;
  size_t queued_bytes = 0;  ///< bytes() as counted when queued (the copy is not changed after)
};

/// Shadow figures of one route since the proxy started.
struct ShadowCounters {
  /// Requests the route could have copied (stage and method allow it), sampled or not; filled
  /// from the proxy's metrics by whoever reports (the sink itself does not see them).
  uint64_t eligible = 0;
  /// Copies the sample picked: each ends compared, dropped, too_large, unanswered or as a
  /// target failure without an answer (or is still on its way).
  uint64_t sampled = 0;
  uint64_t compared = 0;    ///< answers of both sides compared
  uint64_t matched = 0;     ///< compared and equal (after ignore and noise)
  uint64_t mismatched = 0;  ///< compared and different, whatever their class below
  // How mismatches were classified (on a route that carries data, once the sync caught up
  // with the request: see ShadowComparator). Those not yet classified are pending.
  uint64_t lag = 0;        ///< gone once the sync caught up: not counted against the gate
  uint64_t real = 0;       ///< still there after catch-up, or on a route without data
  uint64_t unchecked = 0;  ///< could not be re-checked (no sync status, timeout): counted
  uint64_t dropped = 0;    ///< not sent (the client is never slowed): the sum of dropped_by
  /// Drops by reason: "queue_full" and "queue_bytes" (the proxy-wide queue), "max_inflight" and
  /// "max_rate" (the route's budgets), "stopping". Never by chance: the sample is not a drop.
  std::map<std::string, uint64_t> dropped_by;
  uint64_t too_large = 0;      ///< not compared: a body exceeded the capture limit
  uint64_t unanswered = 0;     ///< not compared: the monolith's answer never completed
  uint64_t target_errors = 0;  ///< the target failed (connect, timeout, 5xx)
  uint64_t as_bytes = 0;       ///< compared byte for byte: a body was not JSON

  /// Mismatches the gate counts: all but those the re-check showed to be sync lag.
  uint64_t counted() const { return mismatched > lag ? mismatched - lag : 0; }
  double mismatchRate() const {
    return compared == 0 ? 0.0 : static_cast<double>(counted()) / static_cast<double>(compared);
  }
  /// Compared copies among those the sample picked.
  double comparedShare() const {
    return sampled == 0 ? 0.0 : static_cast<double>(compared) / static_cast<double>(sampled);
  }
  /// The figures gathered since `earlier` (a step's start).
  ShadowCounters since(const ShadowCounters& earlier) const;
  /// Adds another replica's counts.
  void add(const ShadowCounters& more);
  nlohmann::json toJson() const;
  /// Every count by name, and dropped_by; fromRaw reads them back (a missing one as 0).
  nlohmann::json toRaw() const;
  static ShadowCounters fromRaw(const nlohmann::json& raw);

  /// Calls f(name, a.field, b.field) for every count of two counter sets (dropped_by aside).
  template <typename A, typename B, typename F>
  static void eachCount(A& a, B& b, F&& f) {
    f("eligible", a.eligible, b.eligible);
    f("sampled", a.sampled, b.sampled);
    f("compared", a.compared, b.compared);
    f("matched", a.matched, b.matched);
    f("mismatched", a.mismatched, b.mismatched);
    f("lag", a.lag, b.lag);
    f("real", a.real, b.real);
    f("unchecked", a.unchecked, b.unchecked);
    f("dropped", a.dropped, b.dropped);
    f("too_large", a.too_large, b.too_large);
    f("unanswered", a.unanswered, b.unanswered);
    f("target_errors", a.target_errors, b.target_errors);
    f("as_bytes", a.as_bytes, b.as_bytes);
  }
};

/// The seam for shadow traffic. offer() is called on a loop thread: implementations only queue
/// the copy and return at once (the replay and comparison run elsewhere).
class ShadowSink {
 public:
  virtual ~ShadowSink() = default;
  /// Offers a copy of a served request in the shadow stage; false when it was dropped.
  virtual bool offer(ShadowRequest request) = 0;
  /// Counts a copy that was not offered because a body was larger than the capture limit.
  virtual void tooLarge(const std::string& route) = 0;
  /// Counts a copy that was not offered because the monolith's answer never completed.
  virtual void unanswered(const std::string& route) = 0;
  /// The figures for `route` (zeros for a route never shadowed).
  virtual ShadowCounters counters(const std::string& route) const = 0;
  /// The most recent mismatches of `route`, newest first (a JSON array).
  virtual nlohmann::json diffs(const std::string& route) const = 0;
  /// Stops the replay threads (copies still queued are discarded).
  virtual void stop() {}
};

/// Drops every copy: shadow stage routes are served by the monolith only.
class NullShadowSink : public ShadowSink {
 public:
  bool offer(ShadowRequest) override { return false; }
  void tooLarge(const std::string&) override {}
  void unanswered(const std::string&) override {}
  ShadowCounters counters(const std::string&) const override { return {}; }
  nlohmann::json diffs(const std::string&) const override { return nlohmann::json::array(); }
};

}  // namespace strangler::proxy
