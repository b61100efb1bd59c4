// `sync verify --watch`: one full comparison like verify(), keeping a hash per key of both sides,
// then rounds that compare only the keys the change streams touched since the round before.
//
// Memory: per side a hash per key (key_hashes.h, 16 bytes a row). The set of differing keys is
// kept exactly, so no per-range sums are needed to find them again.
//
// `sync verify` while the sync streams goes through here too (once()): its positions are taken
// before its scan, so a key that differs after the scan, with nothing pending for it, is checked
// against the changes made since, and reported as in flight rather than as a difference.
//
// The verifier reads both sides' change streams itself (verify_feeds.h) and never moves the
// sync's checkpoints.
// Keys are compared in the service's key space, as verify() does (key_map.h): a monolith row whose
// key is paired with a service key takes that key; the pairs are read again every round, after
// the change streams, so a pair recorded meanwhile is known before its keys are read.
// The sync's writes into either side are not captured by the triggers (nothing echoes), so a key
// whose change was still in flight at the end of a round is read again every round until both
// sides agree or nothing for it is pending any more.
#include <algorithm>
#include <chrono>
#include <thread>
#include <unordered_map>

#include "key_hashes.h"
#include "sync_engine_impl.h"
#include "verify_feeds.h"

namespace strangler::acl::sync {
namespace {

using detail::canonical;
using detail::ReadSnapshot;
using detail::Side;
using Clock = std::chrono::steady_clock;
using detail::hashOf;
using detail::kAbsent;
using detail::KeyHashes;

constexpr std::size_t kKeysPerRead = 1000;
constexpr std::size_t kListed = 100;

int64_t millisBetween(Clock::time_point from, Clock::time_point to) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(to - from).count();
}

/// Thrown out of a full pass when the caller asked to stop.
struct Stopped {};

class VerifyWatcher {
 public:
  /// `watching`: rounds follow (verify --watch), so a key the sync may not have reached yet is
  /// left to them; otherwise (one verify) it is looked up in the sync's backlog.
  VerifyWatcher(SyncEngine::Impl& engine, const VerifyWatchOptions& options,
                const std::atomic<bool>& stop, bool watching)
      : engine_(engine),
        stop_(stop),
        feeds_(engine.monolith, engine.service, engine.translator.name(), options.reader_ttl_s,
               options.drain_every_ms, watching) {}
  VerifyWatcher(const VerifyWatcher&) = delete;
  VerifyWatcher& operator=(const VerifyWatcher&) = delete;

  WatchRound fullPass(int64_t n, const std::string& note) {
    const auto started = Clock::now();
    direction_ = engine_.direction();
    // Positions first: whatever changes after them is read again in the next round.
    stash_.clear();
    lost_stash_ = false;
    feeds_.start();
    refreshKeys();
    source_.clear();
    target_.clear();
    differing_.clear();
    untranslatable_.clear();
    carry_.clear();
    scan(engine_.sourceOf(direction_), source_, true);
    scan(engine_.targetOf(direction_), target_, false);
    std::vector<int64_t> candidates;
    const auto& a = source_.sorted();
    const auto& b = target_.sorted();
    for (std::size_t i = 0, j = 0; i < a.size() || j < b.size();) {
      if (j == b.size() || (i < a.size() && a[i].first < b[j].first)) {
        candidates.push_back(a[i++].first);
      } else if (i == a.size() || b[j].first < a[i].first) {
        candidates.push_back(b[j++].first);
      } else {
        if (a[i].second != b[j].second) candidates.push_back(a[i].first);
        ++i;
        ++j;
      }
    }
    differing_.insert(candidates.begin(), candidates.end());
    WatchRound out;
    out.round = n;
    out.full_pass = true;
    out.note = note;
    settle(candidates, out, true);
    return finish(out, started);
  }

  /// One verify: the range scan (verifier.cpp) from this verifier's positions on, its differing
  /// keys settled like a round's.
  VerifyReport once() {
    const auto started = Clock::now();
    direction_ = engine_.direction();
    feeds_.start();
    refreshKeys();
    VerifyReport scanned;
    scanned.direction = direction_;
    const auto candidates = engine_.scanRanges(*keys_, scanned, [this] { feeds_.drainIfDue(); });
    differing_.insert(candidates.begin(), candidates.end());
    WatchRound out;
    settle(candidates, out, true);
    VerifyReport report = std::move(finish(out, started).report);
    report.source_rows = scanned.source_rows;
    report.target_rows = scanned.target_rows;
    report.ranges = scanned.ranges;
    return report;
  }

  WatchRound round(int64_t n) {
    const auto started = Clock::now();
    if (engine_.direction() != direction_)
      return fullPass(n, "the owner changed since the last round: full pass again");
    auto changed = lost_stash_ ? std::nullopt : collect();
    if (!changed) return fullPass(n, feeds_.lost());
    const auto collected = Clock::now();
    std::set<int64_t> wanted = std::move(*changed);
    wanted.merge(stash_);
    stash_.clear();
    wanted.merge(takeDrained());
    wanted.insert(carry_.begin(), carry_.end());
    // Known differences are read again too (cheap while they are few): one healed by a write
    // the triggers do not capture (the sync's own) stops being reported.
    std::size_t known = 0;
    for (auto it = differing_.begin(); it != differing_.end() && known < 1000; ++it, ++known)
      wanted.insert(*it);
    const std::vector<int64_t> keys(wanted.begin(), wanted.end());
    reread(keys);
    const auto reread_done = Clock::now();
    WatchRound out;
    out.round = n;
    out.keys_rechecked = static_cast<int64_t>(keys.size());
    settle(keys, out, false);
    out.changes_millis = millisBetween(started, collected);
    out.reread_millis = millisBetween(collected, reread_done);
    out.settle_millis = millisBetween(reread_done, Clock::now());
    return finish(out, started);
  }

 private:
  /// The keys changed on both sides since the last round (service keys); nullopt when a feed
  /// was lost.
  std::optional<std::set<int64_t>> collect() {
    detail::VerifyFeeds::Keys own;
    if (!feeds_.collect(own)) return std::nullopt;
    return serviceKeys(own);
  }

  /// Keys read from the feeds (the monolith's, the service's), in the service's key space, with
  /// the pairs read after the feeds.
  std::set<int64_t> serviceKeys(const std::set<int64_t> (&own)[2]) {
    refreshKeys();
    std::set<int64_t> keys(own[1]);
    for (auto k : own[0])
      keys.insert(keys_->of(engine_.monolith, k));
    return keys;
  }

  void refreshKeys() { keys_.emplace(engine_.monolith, engine_.key_map->all()); }

  /// Those of `keys` changed on either side since this round's positions. The feeds move on:
  /// every key read here is kept for the next round (stash_), so no change is decoded twice.
  /// When a feed was lost, every key counts as changed and the next round is a full pass.
  std::set<int64_t> changedSince(const std::vector<int64_t>& keys) {
    auto changed = collect();
    if (!changed) {
      lost_stash_ = true;
      return std::set<int64_t>(keys.begin(), keys.end());
    }
    changed->merge(takeDrained());
    std::set<int64_t> found;
    for (auto k : keys)
      if (changed->count(k)) found.insert(k);
    stash_.merge(*changed);
    return found;
  }

  /// The hash of a side's row as compared: a source row through the translator.
  uint64_t hashRow(int64_t key, const Row& row, bool source) {
    if (!source) return hashOf(canonical(row));
    auto translated = engine_.translate(direction_, row);
    if (translated.ok()) {
      (*translated)[engine_.targetOf(direction_).key] = Value(key);
      untranslatable_.erase(key);
      return hashOf(canonical(*translated));
    }
    untranslatable_[key] = translated.error().message();
    // Never equal to a target row's hash.
    return hashOf("untranslatable|" + translated.error().message());
  }

  // Every row of a side from one snapshot, under its service key.
  void scan(Side& side, KeyHashes& into, bool source) {
    ReadSnapshot snapshot(side);
    for (std::optional<int64_t> after;;) {
      if (stop_) throw Stopped{};
      feeds_.drainIfDue();
      auto rows = side.readRange(after, std::nullopt, 20000);
      if (rows.empty() || (after && rows.back().first <= *after)) break;
      after = rows.back().first;
      for (auto& [own, row] : rows) {
        const int64_t key = keys_->of(side, own);
        if (!source && key != own) row[side.key] = Value(key);
        into.append(key, hashRow(key, row, source));
      }
    }
    into.finishPass();
  }

  /// The keys drained during the last full pass, in the service's key space; forgets them.
  std::set<int64_t> takeDrained() {
    detail::VerifyFeeds::Keys own;
    if (!feeds_.takeDrained(own)) return {};
    return serviceKeys(own);
  }

  /// Reads `keys` from both sides (one snapshot each) and updates their hashes.
  void reread(const std::vector<int64_t>& keys) {
    const auto read = [&](Side& side, bool source) {
      std::unordered_map<int64_t, uint64_t> hashes;
      ReadSnapshot snapshot(side);
      detail::forEachSlice(keys, kKeysPerRead, [&](const std::vector<int64_t>& slice) {
        feeds_.drainIfDue();
        for (const auto& [key, row] : keys_->readKeys(side, slice))
          hashes[key] = hashRow(key, row, source);
      });
      return hashes;
    };
    const auto left = read(engine_.sourceOf(direction_), true);
    const auto right = read(engine_.targetOf(direction_), false);
    for (auto k : keys) {
      const auto l = left.find(k);
      const auto r = right.find(k);
      const uint64_t a = l == left.end() ? kAbsent : l->second;
      const uint64_t b = r == right.end() ? kAbsent : r->second;
      if (a == kAbsent) untranslatable_.erase(k);
      source_.set(k, a);
      target_.set(k, b);
      if (a != b) {
        differing_.insert(k);
      } else {
        differing_.erase(k);
      }
    }
  }

  // Keys that differ while the sync still has captured changes of theirs to apply are lag, not
  // differences: like verify(), wait for a running sync to apply them (up to 5 s), then what
  // still differs with nothing pending is a difference, and what is still pending is in flight
  // (and read again next round). The pending changes are looked up before the rows are read: a
  // batch the sync commits in between would otherwise hide a change the read did not see yet.
  // A key changed again since this round's positions is in flight too: the sync may have
  // applied that newer change to the target after the source was read (the target ahead,
  // nothing pending); the next round, which reads that change, decides it.
  // A round does not wait (wait false): what is pending is carried to the next round, which
  // reads it again anyway, so waiting would only make rounds longer under a steady load.
  void settle(const std::vector<int64_t>& candidates, WatchRound& out, bool wait) {
    std::vector<int64_t> keys;
    for (auto k : candidates)
      if (differing_.count(k)) keys.push_back(k);
    const bool applying = wait && !keys.empty() && engine_.leaseHeld();
    // Bounded in time, not attempts: until a logical sync passes this verifier's slot start,
    // each lookup reads the sync's backlog.
    const auto give_up = Clock::now() + std::chrono::seconds(5);
    std::set<int64_t> busy;
    while (!keys.empty()) {
      busy = engine_.pendingKeys(keys, *keys_, &feeds_.known());
      reread(keys);
      out.keys_rechecked += static_cast<int64_t>(keys.size());
      std::vector<int64_t> still;
      bool any_pending = false;
      for (auto k : keys) {
        if (!differing_.count(k)) continue;
        still.push_back(k);
        any_pending = any_pending || busy.count(k) > 0;
      }
      keys.swap(still);
      // Waiting helps only for changes the sync has yet to apply; a key that keeps changing is
      // decided by a later round.
      if (!any_pending || !applying || Clock::now() >= give_up) break;
      std::this_thread::sleep_for(std::chrono::milliseconds(200));
    }
    std::vector<int64_t> undecided;
    for (auto k : keys)
      if (!busy.count(k)) undecided.push_back(k);
    if (!undecided.empty()) {
      const auto moved = changedSince(undecided);
      busy.insert(moved.begin(), moved.end());
    }
    carry_.clear();
    for (auto k : keys)
      if (busy.count(k)) carry_.insert(k);
    out.report.in_flight.assign(carry_.begin(), carry_.end());
  }

  WatchRound& finish(WatchRound& out, Clock::time_point started) {
    VerifyReport& report = out.report;
    report.direction = direction_;
    report.source_rows = source_.size();
    report.target_rows = target_.size();
    std::set<int64_t> ranges;
    for (auto k : differing_) {
      if (carry_.count(k)) continue;
      ranges.insert(k / detail::kRangeWidth);
      ++out.differing;
      if (report.differing_keys.size() < kListed) report.differing_keys.push_back(k);
    }
    report.differing_ranges = static_cast<int64_t>(ranges.size());
    for (const auto& [key, why] : untranslatable_) {
      if (report.untranslatable.size() >= kListed) break;
      report.untranslatable.push_back(std::to_string(key) + ": " + why);
    }
    Side& target = engine_.targetOf(direction_);
    if (target.tableExists("strangler_dead_letters")) {
      report.dead_letters = target.scalar(
          "SELECT COUNT(*) FROM strangler_dead_letters WHERE"
          " mapping = '" +
          engine_.translator.name() + "'");
    }
    out.memory_bytes = source_.bytes() + target_.bytes();
    out.drains = feeds_.drains();
    out.millis =
        std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - started).count();
    return out;
  }

  SyncEngine::Impl& engine_;
  const std::atomic<bool>& stop_;
  detail::VerifyFeeds feeds_;
  std::optional<detail::ServiceKeys> keys_;  // the pairs as of the last read
  Direction direction_ = Direction::kForward;
  KeyHashes source_, target_;
  std::set<int64_t> differing_;  // keys whose hashes differ (in flight ones included)
  std::set<int64_t> carry_;      // in flight at the end of the last round: read again
  std::set<int64_t> stash_;      // changed past the last round's positions (changedSince)
  bool lost_stash_ = false;      // a feed was lost in changedSince: full pass next
  std::map<int64_t, std::string> untranslatable_;
};

}  // namespace

common::Result<WatchRound> SyncEngine::Impl::verifyWatch(const std::atomic<bool>& stop,
                                                         const VerifyWatchOptions& watch) {
  // Rounds follow the change streams, which run from the end of the snapshot on (the service's
  // capture starts only then).
  if (!streaming()) {
    return common::Error{"not_streaming",
                         "mapping '" + translator.name() +
                             "' is still copying its snapshot (or was never run): `verify "
                             "--watch` follows the change streams, which start after it; use "
                             "`sync verify` meanwhile"};
  }
  VerifyWatcher watcher(*this, watch, stop, true);
  WatchRound last;
  try {
    last = watcher.fullPass(0, "");
  } catch (const Stopped&) {
    return common::Error{"stopped", "stopped during the full pass"};
  }
  if (watch.on_round) watch.on_round(last);
  auto next = Clock::now() + std::chrono::milliseconds(watch.interval_ms);
  for (int64_t n = 1; watch.rounds == 0 || n <= watch.rounds; ++n) {
    while (!stop && Clock::now() < next)
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    if (stop) break;
    next = Clock::now() + std::chrono::milliseconds(watch.interval_ms);
    try {
      last = watcher.round(n);
    } catch (const Stopped&) {
      return common::Error{"stopped", "stopped during a full pass"};
    }
    if (watch.on_round) watch.on_round(last);
  }
  return last;
}

common::Result<VerifyReport> SyncEngine::Impl::verifyStreaming() {
  const std::atomic<bool> never{false};
  const VerifyWatchOptions defaults;
  VerifyWatcher watcher(*this, defaults, never, false);
  return watcher.once();
}

}  // namespace strangler::acl::sync
