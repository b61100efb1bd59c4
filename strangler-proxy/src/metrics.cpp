#include "strangler/proxy/metrics.h"

namespace strangler::proxy {
namespace {

std::pair<std::string, std::string> splitKey(const std::string& key) {
  const size_t newline = key.find('\n');
  return {key.substr(0, newline), key.substr(newline + 1)};
}

}  // namespace

Metrics::Metrics(size_t shards) {
  for (size_t i = 0; i < std::max<size_t>(shards, 1); ++i)
    shards_.push_back(std::make_unique<Shard>());
}

void Metrics::recordRequest(size_t shard_index, std::string_view route, std::string_view upstream,
                            int status, double seconds, Protocol protocol) {
  Shard& shard = *shards_[shard_index % shards_.size()];
  std::lock_guard lock(shard.mutex);
  ++shard.protocols[static_cast<size_t>(protocol)];
  shard.scratch.assign(route);
  shard.scratch += '\n';
  shard.scratch += upstream;
  Series& series = shard.series[shard.scratch];
  ++series.by_status[status];
  size_t bucket = 0;
  while (bucket < kBuckets.size() && seconds > kBuckets[bucket])
    ++bucket;
  ++series.buckets[bucket];
  series.sum_seconds += seconds;
  ++series.count;
}

void Metrics::recordFallback(size_t shard_index, std::string_view route, std::string_view reason) {
  Shard& shard = *shards_[shard_index % shards_.size()];
  std::lock_guard lock(shard.mutex);
  shard.scratch.assign(route);
  shard.scratch += '\n';
  shard.scratch += reason;
  ++shard.fallbacks[shard.scratch];
}

void Metrics::recordUpstreamError(size_t shard_index, std::string_view upstream,
                                  std::string_view kind) {
  Shard& shard = *shards_[shard_index % shards_.size()];
  std::lock_guard lock(shard.mutex);
  shard.scratch.assign(upstream);
  shard.scratch += '\n';
  shard.scratch += kind;
  ++shard.upstream_errors[shard.scratch];
}

void Metrics::recordClientEvent(size_t shard_index, std::string_view kind) {
  Shard& shard = *shards_[shard_index % shards_.size()];
  std::lock_guard lock(shard.mutex);
  shard.scratch.assign(kind);
  ++shard.client_events[shard.scratch];
}

void Metrics::recordShadowEligible(size_t shard_index, std::string_view route) {
  Shard& shard = *shards_[shard_index % shards_.size()];
  std::lock_guard lock(shard.mutex);
  shard.scratch.assign(route);
  ++shard.shadow_eligible[shard.scratch];
}

Metrics::Totals Metrics::totals() const {
  Totals totals;
  for (const auto& shard : shards_) {
    std::lock_guard lock(shard->mutex);
    for (const auto& [key, series] : shard->series) {
      Series& sum = totals.series[splitKey(key)];
      for (const auto& [status, count] : series.by_status)
        sum.by_status[status] += count;
      for (size_t i = 0; i < series.buckets.size(); ++i)
        sum.buckets[i] += series.buckets[i];
      sum.sum_seconds += series.sum_seconds;
      sum.count += series.count;
    }
    for (const auto& [key, count] : shard->fallbacks)
      totals.fallbacks[splitKey(key)] += count;
    for (const auto& [key, count] : shard->upstream_errors)
      totals.upstream_errors[splitKey(key)] += count;
    for (const auto& [kind, count] : shard->client_events)
      totals.client_events[kind] += count;
    for (const auto& [route, count] : shard->shadow_eligible)
      totals.shadow_eligible[route] += count;
    for (size_t i = 0; i < shard->protocols.size(); ++i)
      totals.protocols[i] += shard->protocols[i];
  }
  return totals;
}

}  // namespace strangler::proxy
