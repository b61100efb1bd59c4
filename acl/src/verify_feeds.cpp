#include "verify_feeds.h"

#include <unistd.h>

#include <algorithm>
#include <random>
#include <thread>

#include "change_log.h"
#include "sync_lease.h"

namespace strangler::acl::sync::detail {
namespace {

// Change rows per read of a change log; a logical read takes a round's worth at once (every read
// of a slot decodes again from its restart point).
constexpr int64_t kChangesPerRead = 50000;
constexpr int64_t kLogicalRowsPerRead = 2000000;

// A prune holds a registration's row for a moment (PostgreSQL's lock timeout is short): `write`
// is tried again while the lock is busy, up to about a second.
template <typename Write>
auto whileBusy(const Write& write) {
  for (int attempt = 0;; ++attempt) {
    try {
      return write();
    } catch (const soci::soci_error& e) {
      if (!lockBusy(e) || attempt >= 20) throw;
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
  }
}

}  // namespace

VerifyFeeds::VerifyFeeds(Side& monolith, Side& service, const std::string& mapping,
                         int reader_ttl_s, int drain_every_ms, bool watching)
    : reader_ttl_s_(reader_ttl_s),
      // Often enough to renew a registration three times within its TTL.
      drain_every_(std::min(drain_every_ms, reader_ttl_s * 1000 / 3)),
      watching_(watching) {
  std::random_device random;
  const std::string tag = std::to_string(random() % 1000000000);
  reader_ = "verify " + mapping + " " + defaultHolder() + " " + tag;
  slot_ = "strangler_verify_" + std::to_string(getpid()) + "_" + tag;
  feeds_[0].side = &monolith;
  feeds_[0].logical = monolith.logical;
  feeds_[1].side = &service;
}

VerifyFeeds::~VerifyFeeds() {
  for (auto& feed : feeds_) {
    try {
      if (!feed.logical) unregisterReader(*feed.side, reader_);
    } catch (const std::exception&) {
      // It expires by itself.
    }
  }
  if (!slot_session_) return;
  try {
    *slot_session_ << "SELECT pg_drop_replication_slot(:s)", soci::use(slot_);
  } catch (const std::exception&) {
    // Temporary: it goes with the session.
  }
}

void VerifyFeeds::start() {
  drained_[0].clear();
  drained_[1].clear();
  last_drain_ = std::chrono::steady_clock::now();
  for (auto& feed : feeds_) {
    Side& side = *feed.side;
    if (!feed.logical) {
      feed.position = currentPosition(side);
      registerReader(side, reader_, feed.position, reader_ttl_s_);
      continue;
    }
    if (!slot_session_ || !slotState(side, slot_).exists) {
      // A session of its own: the engine's slot session peeks at the sync's slot, and an error
      // there ("active for PID") would drop a temporary slot.
      slot_session_ = std::make_unique<soci::session>();
      common::openSession(*slot_session_, side.target);
      feed.position = createTemporarySlot(*slot_session_, slot_);
      known_ = KnownCommits{};
      known_.since = parseLsn(feed.position);
      known_.lag_before_since = watching_;
    } else {
      feed.position = currentLsn(side);
      confirmLogical(side, feed.position, slotReader());
    }
  }
}

bool VerifyFeeds::collect(Keys& own) {
  for (std::size_t i = 0; i < 2; ++i) {
    Feed& feed = feeds_[i];
    Side& side = *feed.side;
    // Still registered here means no prune went past the position since it was set.
    if (!feed.logical && !renew(side, feed.position)) {
      lost_ =
          "the change log was pruned past this verifier's position (its registration expired "
          "while it stalled): full pass again";
      return false;
    }
    if (feed.logical && !slotState(side, slot_).exists) {
      lost_ =
          "this verifier's replication slot is gone (an error in its session drops it): full "
          "pass again from a new one";
      return false;
    }
    feed.position = readChanges(feed, own[i]);
    if (feed.logical) {
      confirmLogical(side, feed.position, slotReader());
    } else if (!renew(side, feed.position)) {
      registerReader(side, reader_, feed.position, reader_ttl_s_);
    }
  }
  return true;
}

void VerifyFeeds::drainIfDue() {
  const auto now = std::chrono::steady_clock::now();
  if (now - last_drain_ < drain_every_) return;
  for (std::size_t i = 0; i < 2; ++i) {
    Feed& feed = feeds_[i];
    if (!feed.logical) {
      // A registration is renewed at its position: a pass longer than reader_ttl_s must not
      // let the sync's prune take it (then every round would start a full pass again). One
      // already gone is found lost by the next collect().
      renewAside(i);
      continue;
    }
    feed.position = readChanges(feed, drained_[i]);
    confirmLogical(*feed.side, feed.position, slotReader());
    ++drains_;
  }
  last_drain_ = std::chrono::steady_clock::now();
}

bool VerifyFeeds::takeDrained(Keys& own) {
  if (drained_[0].empty() && drained_[1].empty()) return false;
  for (std::size_t i = 0; i < 2; ++i) {
    own[i].merge(drained_[i]);
    drained_[i].clear();
  }
  return true;
}

std::string VerifyFeeds::readChanges(const Feed& feed, std::set<int64_t>& keys) {
  Side& side = *feed.side;
  std::string at = feed.position;
  if (feed.logical) {
    const std::string upto = currentLsn(side);
    for (;;) {
      auto batch = readLogical(side, at, kLogicalRowsPerRead, upto, slotReader());
      for (const auto& change : batch.rows) {
        keys.insert(change.pk);
        known_.add(change);
      }
      const bool moved = batch.next_position != at;
      at = batch.next_position;
      if (!moved || parseLsn(at) >= parseLsn(upto)) return at;
    }
  }
  const std::string to = side.engine().laterOf(at, currentPosition(side));
  for (int64_t after_seq = 0;;) {
    const auto rows = readWindow(side, at, to, after_seq, kChangesPerRead);
    for (const auto& change : rows)
      keys.insert(change.pk);
    if (static_cast<int64_t>(rows.size()) < kChangesPerRead) return to;
    after_seq = rows.back().seq;
  }
}

void VerifyFeeds::renewAside(std::size_t i) {
  Side& side = *feeds_[i].side;
  try {
    if (!renew_sql_[i]) {
      renew_sql_[i] = std::make_unique<soci::session>();
      common::openSession(*renew_sql_[i], side.target);
    }
    whileBusy([&] {
      return renewReaderOn(*renew_sql_[i], side.backend(), reader_, feeds_[i].position,
                           reader_ttl_s_);
    });
  } catch (const std::exception&) {
    // Best effort: a registration that expires anyway is found lost by the next collect().
    renew_sql_[i].reset();
  }
}

bool VerifyFeeds::renew(Side& side, const std::string& position) {
  return whileBusy([&] { return renewReader(side, reader_, position, reader_ttl_s_); });
}

}  // namespace strangler::acl::sync::detail
