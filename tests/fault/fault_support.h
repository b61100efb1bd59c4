#pragma once

// Shared by the fault suite: a keep-alive load generator, figure reporting, metric reading and
// the fake backend process (tests/strangler-proxy/fake_backend.py) that tests SIGKILL.

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "strangler/testing/figures.h"
#include "strangler/testing/process.h"

namespace strangler::fault {

using Clock = std::chrono::steady_clock;

/// True when the suite runs in its long form (STRANGLER_FAULT_FULL=1): more load, longer runs.
bool fullRun();

using strangler::testing::reportFigure;

/// The sum of every sample in Prometheus text whose line starts with `prefix` (a metric name,
/// optionally with some of its labels: `strangler_proxy_fallbacks_total{route="drivers"`).
double metricSum(const std::string& metrics_text, const std::string& prefix);

/// One answer seen by the load generator.
struct LoadResponse {
  int status = 0;        ///< 0: no answer (connect failure, reset, timeout, truncated)
  std::string upstream;  ///< the X-Strangler-Upstream header, when present
  Clock::time_point at;  ///< when the answer was complete
  std::chrono::microseconds latency{0};
};

/// Totals of a load run.
struct LoadTotals {
  int64_t requests = 0;          ///< answered or failed
  int64_t ok = 0;                ///< 2xx
  int64_t http_errors = 0;       ///< answered with a status outside 2xx
  int64_t transport_errors = 0;  ///< no complete answer
  std::map<int, int64_t> statuses;
  std::map<std::string, int64_t> upstreams;
  std::chrono::microseconds p50{0};
  std::chrono::microseconds p99{0};
  std::chrono::microseconds max{0};

  int64_t clientErrors() const { return http_errors + transport_errors; }
  /// "2000 requests, 0 client-visible errors, statuses {200: 2000}, upstreams {...}, p99 ...".
  std::string describe() const;
};

/// A bounded closed-loop load generator on loopback: `connections` threads, each with one
/// keep-alive HTTP/1.1 connection (reopened after a close or a failure), sending requests back
/// to back until stop(). Each answer is passed to the observer (from the client threads).
class LoadGenerator {
 public:
  struct Options {
    uint16_t port = 0;
    int connections = 8;
    std::string method = "GET";
    std::string path_prefix = "/";  ///< requests go to path_prefix + "<connection>-<n>"
    std::string body;
    std::chrono::milliseconds timeout{5000};  ///< per request
    std::chrono::milliseconds pause{0};       ///< between requests of one connection
  };
  using Observer = std::function<void(const LoadResponse&)>;

  explicit LoadGenerator(Options options, Observer observer = {});
  ~LoadGenerator();
  LoadGenerator(const LoadGenerator&) = delete;
  LoadGenerator& operator=(const LoadGenerator&) = delete;

  void start();
  /// Stops every connection after its current request and returns the totals.
  LoadTotals stop();
  /// Requests answered or failed so far.
  int64_t requests() const { return requests_.load(); }

 private:
  void run(int index);

  Options options_;
  Observer observer_;
  std::atomic<bool> stop_{false};
  std::atomic<int64_t> requests_{0};
  std::vector<std::thread> threads_;
  std::mutex mutex_;
  std::vector<LoadResponse> log_;
  bool stopped_ = false;
  LoadTotals totals_;
};

/// tests/strangler-proxy/fake_backend.py as a real process (so it can be SIGKILLed), listening
/// on `port` (0: any free port). `port()` is 0 when it did not come up.
class BackendProcess {
 public:
  BackendProcess(const std::string& name, uint16_t port);
  uint16_t port() const { return port_; }
  strangler::testing::ChildProcess& process() { return *process_; }

 private:
  std::unique_ptr<strangler::testing::ChildProcess> process_;
  uint16_t port_ = 0;
};

/// Polls `condition` every `step` until it holds or `limit` passes.
template <typename Condition>
bool waitUntil(Condition condition, std::chrono::milliseconds limit,
               std::chrono::milliseconds step = std::chrono::milliseconds(5)) {
  const auto give_up = Clock::now() + limit;
  while (!condition()) {
    if (Clock::now() > give_up) return false;
    std::this_thread::sleep_for(step);
  }
  return true;
}

/// Milliseconds between two time points, as a double.
inline double millisBetween(Clock::time_point from, Clock::time_point to) {
  return std::chrono::duration<double, std::milli>(to - from).count();
}

}  // namespace strangler::fault
