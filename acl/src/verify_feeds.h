// The verifier's own reading of both sides' change streams (`sync verify --watch` and a
// `sync verify` while the sync streams). It never moves the sync's checkpoints:
// - trigger capture (SQLite, PostgreSQL with --capture trigger, the service side always): its
//   own position on strangler_changes, registered in strangler_readers so the sync's prune keeps
//   what the verifier has not read yet; the registration is renewed every round and expires
//   after reader_ttl_s, so a killed verifier holds pruning back for that long at most. When the
//   renewal finds the registration gone (the verifier stalled past its TTL and a prune removed
//   it), changes may be missing: collect() says so and the caller makes a full pass again.
// - logical capture (a PostgreSQL monolith with wal_level=logical): a temporary replication slot
//   of its own, created before the full pass reads anything, so every change committed after the
//   snapshot was taken is in the slot. PostgreSQL drops it when the verifier's session ends.
//   Unlike the sync, it takes the sync's own writes too (a key the sync wrote changed as well).
//   What it reads also says where each key's latest change committed (known()), so once the
//   sync's checkpoint has passed the slot's start, "is a change of this key still pending?" is a
//   lookup in memory, not a read of the sync's backlog from its slot.
//   During a full pass the slot is read on every `drain_every_ms` (drainIfDue()), so it never
//   holds the WAL of the whole pass.
// Keys come out in each side's own key space; the caller maps them to the service's.
#pragma once

#include <soci/soci.h>

#include <chrono>
#include <cstdint>
#include <memory>
#include <set>
#include <string>

#include "logical_log.h"
#include "sync_side.h"

namespace strangler::acl::sync::detail {

class VerifyFeeds {
 public:
  /// Own keys per side: [0] the monolith's, [1] the service's.
  using Keys = std::set<int64_t>[2];

  /// `watching`: rounds follow (verify --watch), so a key the sync may not have reached yet is
  /// lag for them to decide (KnownCommits::lag_before_since).
  VerifyFeeds(Side& monolith, Side& service, const std::string& mapping, int reader_ttl_s,
              int drain_every_ms, bool watching);
  ~VerifyFeeds();
  VerifyFeeds(const VerifyFeeds&) = delete;
  VerifyFeeds& operator=(const VerifyFeeds&) = delete;

  /// Takes both feeds' positions now (a new temporary slot when there is none) and forgets what
  /// an earlier pass drained.
  void start();
  /// Adds the keys changed on each side since the positions to `own` and moves the positions on;
  /// false when a feed was lost (lost() says why; the caller makes a full pass).
  bool collect(Keys& own);
  const std::string& lost() const { return lost_; }
  /// During a long read (a full pass, a large re-read): when `drain_every_ms` passed since the
  /// last drain, reads the logical feed on and confirms the slot (the keys read wait for
  /// takeDrained()), and renews the registrations on trigger-fed change logs at their positions,
  /// so a pass longer than reader_ttl_s keeps them.
  void drainIfDue();
  /// Moves the keys drained since start() into `own`; false when there were none.
  bool takeDrained(Keys& own);
  /// Drains since this verifier started (reported in WatchRound::drains).
  int64_t drains() const { return drains_; }
  KnownCommits& known() { return known_; }

 private:
  struct Feed {
    Side* side = nullptr;
    std::string position;  ///< read through here
    bool logical = false;
  };

  std::string readChanges(const Feed& feed, std::set<int64_t>& keys);
  bool renew(Side& side, const std::string& position);
  /// Renews feed `i`'s registration on a session of its own (the side's may hold a snapshot).
  void renewAside(std::size_t i);
  SlotReader slotReader() { return SlotReader{slot_, false, slot_session_.get()}; }

  const int reader_ttl_s_;
  const std::chrono::milliseconds drain_every_;
  const bool watching_;
  std::string reader_;
  std::string slot_;
  std::unique_ptr<soci::session> slot_session_;  // holds the temporary slot
  std::unique_ptr<soci::session> renew_sql_[2];  // renewals during a scan (renewAside)
  std::string lost_;                             // why the last collect() gave up
  Feed feeds_[2];                                // the monolith's, the service's
  KnownCommits known_;                           // what the verifier's slot saw, not yet applied
  std::set<int64_t> drained_[2];
  std::chrono::steady_clock::time_point last_drain_;
  int64_t drains_ = 0;
};

}  // namespace strangler::acl::sync::detail
