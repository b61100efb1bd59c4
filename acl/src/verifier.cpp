// Comparing both sides through the translator: counts and checksums per key range, then the
// differing ranges key by key.
#include <algorithm>
#include <chrono>
#include <map>
#include <set>
#include <thread>

#include "logical_log.h"
#include "sync_engine_impl.h"
#include "sync_lease.h"

namespace strangler::acl::sync {

using detail::canonical;
using detail::fnv1a;
using detail::kRangeWidth;
using detail::ReadSnapshot;
using detail::Side;
using detail::State;

common::Result<VerifyReport> SyncEngine::Impl::verify() {
  // While both change streams run, the verifier follows them (verify_watch.cpp): a key that
  // differs with nothing pending is checked against the changes made since the scan began.
  if (streaming()) return verifyStreaming();
  const detail::ServiceKeys keys(monolith, key_map->all());
  VerifyReport report;
  report.direction = direction();
  report.differing_keys = scanRanges(keys, report);
  recheckInFlight(report, keys);
  Side& target = targetOf(report.direction);
  if (target.tableExists("strangler_dead_letters")) {
    report.dead_letters = target.scalar(
        "SELECT COUNT(*) FROM strangler_dead_letters WHERE mapping = '" + translator.name() + "'");
  }
  return report;
}

std::vector<int64_t> SyncEngine::Impl::scanRanges(const detail::ServiceKeys& keys,
                                                  VerifyReport& report,
                                                  const std::function<void()>& meanwhile) {
  const auto tick = [&] {
    if (meanwhile) meanwhile();
  };
  const Direction d = report.direction;
  Side& source = sourceOf(d);
  Side& target = targetOf(d);
  std::vector<int64_t> differing;
  struct Range {
    int64_t count = 0;
    uint64_t sum = 0;
  };
  std::map<int64_t, Range> source_ranges, target_ranges;
  // Each side is read from one consistent snapshot (a repeatable-read transaction): a row moved
  // during the scan is seen once, as it was; what changed since is rechecked below.
  auto source_snapshot = std::make_unique<ReadSnapshot>(source);
  for (std::optional<int64_t> after;;) {
    tick();
    auto rows = source.readRange(after, std::nullopt, 20000);
    if (rows.empty() || (after && rows.back().first <= *after)) break;
    after = rows.back().first;
    for (const auto& [own_key, row] : rows) {
      ++report.source_rows;
      const int64_t key = keys.of(source, own_key);
      auto translated = translate(d, row);
      if (translated.ok() && key != own_key) (*translated)[target.key] = Value(key);
      auto& range = source_ranges[key / kRangeWidth];
      ++range.count;
      if (!translated.ok()) {
        if (report.untranslatable.size() < 100)
          report.untranslatable.push_back(std::to_string(key) + ": " +
                                          translated.error().message());
        continue;
      }
      range.sum += fnv1a(canonical(*translated));
    }
  }
  source_snapshot.reset();
  auto target_snapshot = std::make_unique<ReadSnapshot>(target);
  for (std::optional<int64_t> after;;) {
    tick();
    auto rows = target.readRange(after, std::nullopt, 20000);
    if (rows.empty() || (after && rows.back().first <= *after)) break;
    after = rows.back().first;
    for (const auto& [key, row] : keys.normalized(target, std::move(rows))) {
      ++report.target_rows;
      auto& range = target_ranges[key / kRangeWidth];
      ++range.count;
      range.sum += fnv1a(canonical(row));
    }
  }
  target_snapshot.reset();
  std::set<int64_t> all_ranges;
  for (const auto& [r, v] : source_ranges)
    all_ranges.insert(r);
  for (const auto& [r, v] : target_ranges)
    all_ranges.insert(r);
  report.ranges = static_cast<int64_t>(all_ranges.size());
  for (auto r : all_ranges) {
    const auto& a = source_ranges[r];
    const auto& b = target_ranges[r];
    if (a.count == b.count && a.sum == b.sum) continue;
    ++report.differing_ranges;
    // Name the keys: compare the range row by row.
    std::map<int64_t, std::string> left, right;
    const int64_t lo = r * kRangeWidth;
    const int64_t hi = (r + 1) * kRangeWidth - 1;
    for (const auto& [key, row] : keys.readRange(source, lo, hi)) {
      auto translated = translate(d, row);
      if (translated.ok()) (*translated)[target.key] = Value(key);
      left[key] = translated.ok() ? canonical(*translated) : "untranslatable";
    }
    for (const auto& [key, row] : keys.readRange(target, lo, hi))
      right[key] = canonical(row);
    std::set<int64_t> range_keys;
    for (const auto& [k, v] : left)
      range_keys.insert(k);
    for (const auto& [k, v] : right)
      range_keys.insert(k);
    for (auto k : range_keys) {
      if (left.count(k) && right.count(k) && left[k] == right[k]) continue;
      differing.push_back(k);
    }
  }
  return differing;
}

// A range can differ in the scan and agree key by key a moment later (a change landed in
// between): the keys decide. They are compared again until the sync has applied their pending
// changes; those that then match, or still have changes in flight, are lag, not differences.
// (While the sync streams, verify() goes through verify_watch.cpp instead, which also knows the
// changes made since the scan began.)
void SyncEngine::Impl::recheckInFlight(VerifyReport& report,
                                       const detail::ServiceKeys& service_keys) {
  const Direction d = direction();
  Side& source = sourceOf(d);
  Side& target = targetOf(d);
  const auto still_differing = [&](const std::vector<int64_t>& keys) {
    std::vector<int64_t> differing;
    detail::forEachSlice(keys, 1000, [&](const std::vector<int64_t>& slice) {
      std::map<int64_t, std::string> left, right;
      for (const auto& [key, row] : service_keys.readKeys(source, slice)) {
        auto translated = translate(d, row);
        if (translated.ok()) (*translated)[target.key] = Value(key);
        left[key] = translated.ok() ? canonical(*translated) : "untranslatable";
      }
      for (const auto& [key, row] : service_keys.readKeys(target, slice))
        right[key] = canonical(row);
      for (auto k : slice)
        if (left[k] != right[k]) differing.push_back(k);
    });
    return differing;
  };
  const auto pending = [&](const std::vector<int64_t>& keys) {
    return pendingKeys(keys, service_keys);
  };
  std::vector<int64_t> keys = report.differing_keys;
  std::set<int64_t> in_flight;
  // Waiting helps only while someone applies (a running watch holds the lease).
  const bool applying = leaseHeld();
  for (int round = 0; round < (applying ? 25 : 0) && !keys.empty(); ++round) {
    keys = still_differing(keys);
    const auto busy = pending(keys);
    if (busy.empty()) break;
    in_flight.insert(busy.begin(), busy.end());
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
  }
  keys = still_differing(keys);
  const auto busy = pending(keys);
  std::set<int64_t> differing_ranges;
  report.differing_keys.clear();
  for (auto k : keys) {
    if (busy.count(k)) {
      in_flight.insert(k);
      continue;
    }
    in_flight.erase(k);
    if (report.differing_keys.size() < 100) report.differing_keys.push_back(k);
    differing_ranges.insert(k / kRangeWidth);
  }
  report.in_flight.assign(in_flight.begin(), in_flight.end());
  report.differing_ranges = static_cast<int64_t>(differing_ranges.size());
}

bool SyncEngine::Impl::streaming() {
  return readState(service, Direction::kForward).phase == "stream" &&
         readState(monolith, Direction::kReverse).phase == "stream";
}

bool SyncEngine::Impl::leaseHeld() {
  return service.tableExists("strangler_sync_lease") &&
         detail::currentLease(service, translator.name()).has_value();
}

std::set<int64_t> SyncEngine::Impl::pendingKeys(const std::vector<int64_t>& keys,
                                                const detail::ServiceKeys& service_keys,
                                                detail::KnownCommits* known) {
  std::set<int64_t> found;
  if (keys.empty()) return found;
  for (Direction stream : {Direction::kForward, Direction::kReverse}) {
    Side& from = sourceOf(stream);
    const State state = readState(targetOf(stream), stream);
    if (state.phase != "stream") continue;
    const auto own = service_keys.own(from, keys);
    if (from.logical) {
      const uint64_t applied = detail::parseLsn(state.checkpoint.position);
      if (known != nullptr && known->since != 0 && applied >= known->since) {
        known->prune(applied);
        for (auto k : own)
          if (known->latest.count(k)) found.insert(service_keys.of(from, k));
        continue;
      }
      if (known != nullptr && known->since != 0 && known->lag_before_since) {
        // The sync has not applied yet everything committed before the verifier's slot began
        // (before its rows were read): any of these keys may simply be behind. Lag, not a
        // difference, until the sync passes that point; reading its backlog to tell them apart
        // would cost more the further behind it is, the moment it can least afford it.
        for (auto k : own)
          found.insert(service_keys.of(from, k));
        continue;
      }
      // The sync's backlog from its checkpoint on, read whole: a cost that grows with it. A
      // backlog longer than one read cannot be told from lag past what was read (a peek decodes
      // from the slot's start every time, so reading on would cost the square): all pending.
      const std::set<int64_t> wanted(own.begin(), own.end());
      const std::string upto = detail::currentLsn(from);
      const auto backlog = detail::readLogical(from, state.checkpoint.position, 1000000, upto);
      for (const auto& change : backlog.rows)
        if (wanted.count(change.pk)) found.insert(service_keys.of(from, change.pk));
      if (backlog.next_position != upto) {
        for (auto k : own)
          found.insert(service_keys.of(from, k));
      }
      continue;
    }
    if (!from.tableExists("strangler_changes")) continue;
    // In slices: a full pass under load can hand over many thousands of keys.
    detail::forEachSlice(own, 1000, [&](const std::vector<int64_t>& slice) {
      long long pk = 0;
      soci::statement st = (from.sql->prepare << "SELECT DISTINCT pk FROM strangler_changes"
                                                 " WHERE table_name = :t AND pk IN (" +
                                                     detail::keyList(slice) + ") AND " +
                                                     detail::notCovered(from, state.checkpoint),
                            soci::use(from.table), soci::into(pk));
      st.execute();
      while (st.fetch())
        found.insert(service_keys.of(from, pk));
    });
  }
  return found;
}

}  // namespace strangler::acl::sync
