#pragma once

#include <http_parser.h>

#include <atomic>
#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "strangler/proxy/response_diff.h"
#include "strangler/proxy/runtime.h"
#include "strangler/proxy/shadow_comparator.h"

namespace strangler::proxy {

/// Marks every request the shadow stage sends (copies and re-checks).
inline constexpr const char* kShadowHeader = "X-Strangler-Shadow";
/// Whether a client's request header goes on a shadow copy: not hop-by-hop, not the body's
/// framing (the copy sets its own), not the proxy's own X-Strangler-*.
bool forwardedOnCopy(std::string_view name);

/// Sends shadow copies to their target (and, for the noise filter, to the monolith again) from
/// one thread, many at once: non-blocking sockets on its own epoll, keep-alive connections per
/// endpoint, answers read with http-parser and captured up to a limit. A copy costs the thread a
/// send and a receive, not a blocked thread per round trip, so the copies keep up with the live
/// traffic while the thread runs only on CPU the event loops leave idle.
///
/// Plain HTTP/1.1 only: a target with "tls" or "protocol": "h2" fails its copies (counted as
/// target errors with that reason).
class ShadowReplayLoop {
 public:
  using Outcome = ReplayOutcome;
  /// One request to send: `job` with `path` to `upstream` (from job.runtime).
  struct Leg {
    const RuntimeUpstream* upstream = nullptr;
    std::string path;
  };

  /// `next` is called on the loop's thread when it can take more copies: it returns the next job
  /// (or nullopt). `legs` says where a job goes, in order, given the outcomes so far (an empty
  /// optional: done). `done` gets the job and every leg's outcome, on the loop's thread.
  using Next = std::function<std::optional<ShadowRequest>()>;
  using Legs = std::function<std::optional<Leg>(const ShadowRequest&, const std::vector<Outcome>&)>;
  using Done = std::function<void(ShadowRequest&&, std::vector<Outcome>&&)>;

  ShadowReplayLoop(size_t max_in_flight, size_t capture_bytes, Next next, Legs legs, Done done);
  ~ShadowReplayLoop();
  ShadowReplayLoop(const ShadowReplayLoop&) = delete;
  ShadowReplayLoop& operator=(const ShadowReplayLoop&) = delete;

  /// Thread-safe and cheap: there may be new jobs (a write on an eventfd only while the loop
  /// sleeps with room for more).
  void wake();
  /// Ends the thread; copies in flight are abandoned.
  void stop();

 private:
  struct Exchange;
  struct Connection {
    int fd = -1;
    std::string pool;
  };

  void run();
  void pull();
  /// Sends the exchange's next leg, or hands the copy to `done` when there is none.
  void advance(std::unique_ptr<Exchange> exchange);
  void begin(std::unique_ptr<Exchange> exchange);
  void send(Exchange& exchange);
  void onEvents(Exchange& exchange, uint32_t events);
  void finish(Exchange& exchange, std::optional<CapturedResponse> answer, std::string error,
              bool reusable);

  const size_t max_in_flight_;
  const size_t capture_bytes_;
  Next next_;
  Legs legs_;
  Done done_;
  int epoll_ = -1;
  int wake_fd_ = -1;
  std::atomic<bool> sleeping_{false};
  std::atomic<bool> stopping_{false};
  std::map<int, std::unique_ptr<Exchange>> by_fd_;
  /// Kept-alive connections per endpoint, with when each went idle. Closed after 200 ms idle: a
  /// target served a thread per connection (Poco, Tomcat) would otherwise keep a thread parked
  /// on each, taken from its live traffic.
  std::map<std::string, std::vector<std::pair<int, std::chrono::steady_clock::time_point>>> idle_;
  void closeIdle(std::chrono::steady_clock::time_point now);
  std::thread thread_;
};

}  // namespace strangler::proxy
