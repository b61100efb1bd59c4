#pragma once

#include <array>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace strangler::proxy {

/// Request counters and latency histograms. Each worker thread writes its own shard (an
/// uncontended lock), the admin API sums the shards when asked.
class Metrics {
 public:
  static constexpr std::array<double, 14> kBuckets = {
      0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0};
  /// The protocol a client spoke (requests_by_protocol_total).
  enum class Protocol { kHttp10, kHttp11, kHttp2 };
  static constexpr std::array<const char*, 3> kProtocolNames = {"HTTP/1.0", "HTTP/1.1", "HTTP/2"};
  struct Series {
    std::map<int, uint64_t> by_status;
    std::array<uint64_t, kBuckets.size() + 1> buckets{};  ///< last: +Inf
    double sum_seconds = 0;
    uint64_t count = 0;
  };
  /// Totals over all shards, keyed by (route, upstream).
  struct Totals {
    std::map<std::pair<std::string, std::string>, Series> series;
    std::map<std::pair<std::string, std::string>, uint64_t> fallbacks;        ///< (route, reason)
    std::map<std::pair<std::string, std::string>, uint64_t> upstream_errors;  ///< (upstream, kind)
    std::map<std::string, uint64_t> client_events;                            ///< by kind
    std::map<std::string, uint64_t> shadow_eligible;                          ///< by route
    std::array<uint64_t, kProtocolNames.size()> protocols{};                  ///< by Protocol
  };

  explicit Metrics(size_t shards);

  /// Counts one finished request.
  void recordRequest(size_t shard, std::string_view route, std::string_view upstream, int status,
                     double seconds, Protocol protocol);
  /// Counts a request that was retried on the monolith.
  void recordFallback(size_t shard, std::string_view route, std::string_view reason);
  /// Counts an upstream failure (connect, timeout, reset, protocol, 5xx).
  void recordUpstreamError(size_t shard, std::string_view upstream, std::string_view kind);
  /// Counts something the proxy did to a client's message or connection rather than forward it
  /// as sent: trailers_dropped, obs_fold, connection_refused (max_connections), body_not_kept
  /// (a fallback or retry skipped: the body was too large to keep).
  void recordClientEvent(size_t shard, std::string_view kind);
  /// Counts a request a route could have copied to its shadow (its stage and method allow it),
  /// whether the sample took it or not: what the share of compared requests is a share of.
  void recordShadowEligible(size_t shard, std::string_view route);
  /// Sums every shard.
  Totals totals() const;

 private:
  struct Shard {
    std::mutex mutex;
    std::unordered_map<std::string, Series> series;  ///< key: route '\n' upstream
    std::unordered_map<std::string, uint64_t> fallbacks;
    std::unordered_map<std::string, uint64_t> upstream_errors;
    std::unordered_map<std::string, uint64_t> client_events;
    std::unordered_map<std::string, uint64_t> shadow_eligible;
    std::array<uint64_t, kProtocolNames.size()> protocols{};
    std::string scratch;
  };
  std::vector<std::unique_ptr<Shard>> shards_;
};

}  // namespace strangler::proxy
