// Where the sync stands and who owns the rows: status, the fence positions and backlog, the
// owner's change (setOwner, flip) and uninstall.
#include <soci/soci.h>

#include <algorithm>
#include <chrono>
#include <thread>

#include "change_capture.h"
#include "change_log.h"
#include "logical_log.h"
#include "sync_engine_impl.h"
#include "sync_lease.h"

namespace strangler::acl::sync {

using common::DbBackend;
using common::Error;
using detail::Side;
using detail::State;
using Int = long long;

// ---- status ---------------------------------------------------------------------------------

common::Result<StatusReport> SyncEngine::Impl::status() {
  StatusReport report;
  report.direction = direction();
  const State fwd = readState(service, Direction::kForward);
  const State rev = readState(monolith, Direction::kReverse);
  report.phase = fwd.phase;
  report.snapshot_last_key = fwd.last_key;
  report.rows_copied = fwd.rows_copied;
  report.changes_applied = fwd.changes_applied;
  report.reverse_applied = rev.changes_applied;
  report.position = fwd.checkpoint.position;
  report.reverse_position = rev.phase == "stream" ? rev.checkpoint.position : "";
  std::optional<int64_t> oldest;
  const auto pending = [&](Side& source, const State& s) -> int64_t {
    if (!source.tableExists("strangler_changes") || s.checkpoint.position.empty()) return 0;
    const std::string where = " FROM strangler_changes WHERE table_name = '" + source.table +
                              "' AND origin = 'app' AND " +
                              detail::notCovered(source, s.checkpoint);
    const int64_t n = source.scalar("SELECT COUNT(*)" + where);
    if (n > 0) {
      const int64_t age = detail::nowSeconds() - source.scalar("SELECT MIN(changed_at)" + where);
      oldest = std::max(oldest.value_or(0), age);
    }
    return n;
  };
  report.capture = monolith.logical ? "logical" : "trigger";
  report.key_mode = detail::toString(key_map->mode());
  report.mapped_keys = key_map->size();
  if (monolith.logical) {
    const auto slot = detail::slotState(monolith);
    if (slot.exists) report.slot_lag_bytes = slot.lag_bytes;
    if (fwd.phase == "stream" && slot.exists) {
      const auto rows = detail::readLogical(monolith, fwd.checkpoint.position, 1000000).rows;
      report.pending_changes = static_cast<int64_t>(rows.size());
      for (const auto& row : rows)
        oldest = std::max(oldest.value_or(0), detail::nowSeconds() - row.changed_at);
    }
  } else if (fwd.phase == "stream") {
    report.pending_changes = pending(monolith, fwd);
  }
  if (rev.phase == "stream") report.reverse_pending = pending(service, rev);
  report.pending_changes += report.reverse_pending;
  report.oldest_pending_age_s = oldest;
  if (service.tableExists("strangler_dead_letters")) {
    report.dead_letters =
        service.scalar("SELECT COUNT(*) FROM strangler_dead_letters WHERE mapping = '" +
                       translator.name() + "'") +
        (monolith.tableExists("strangler_dead_letters")
             ? monolith.scalar("SELECT COUNT(*) FROM strangler_dead_letters WHERE mapping = '" +
                               translator.name() + "'")
             : 0);
  }
  if (service.tableExists("strangler_sync_lease")) {
    if (auto held = detail::currentLease(service, translator.name()))
      report.lease = LeaseInfo{held->holder, held->expires_in_ms};
  }
  if (service.tableExists("strangler_sync_owner")) {
    std::string fence;
    soci::indicator ind = soci::i_null;
    *service.sql << "SELECT fence FROM strangler_sync_owner WHERE mapping = :m",
        soci::use(translator.name()), soci::into(fence, ind);
    if (ind == soci::i_ok) report.fence = fence;
  }
  return report;
}

// ---- ownership ------------------------------------------------------------------------------

Positions SyncEngine::Impl::positions() {
  return Positions{positionNow(monolith), positionNow(service)};
}

Backlog SyncEngine::Impl::backlog(const Positions& fence) {
  Backlog backlog;
  const auto count = [&](Side& source, Side& target, Direction d, const std::string& at) {
    const State s = readState(target, d);
    if (s.phase != "stream") return std::numeric_limits<int64_t>::max() / 2;
    return source.scalar("SELECT COUNT(*) FROM strangler_changes WHERE table_name = '" +
                         source.table + "' AND origin = 'app' AND " +
                         detail::atOrBefore(source, at) + " AND " +
                         detail::notCovered(source, s.checkpoint));
  };
  if (monolith.logical) {
    const State s = readState(service, Direction::kForward);
    backlog.forward =
        s.phase != "stream"
            ? std::numeric_limits<int64_t>::max() / 2
            : static_cast<int64_t>(
                  detail::readLogical(monolith, s.checkpoint.position, 1000000, fence.monolith)
                      .rows.size());
  } else {
    backlog.forward = count(monolith, service, Direction::kForward, fence.monolith);
  }
  backlog.reverse = count(service, monolith, Direction::kReverse, fence.service);
  return backlog;
}

void SyncEngine::Impl::setOwner(Direction owner, const std::string& fence) {
  Int now = detail::nowSeconds();
  const std::string name = detail::ownerName(owner);
  common::Transaction tx(*service.sql, service.backend(), common::Transaction::Mode::kWrite);
  *service.sql << "INSERT INTO strangler_sync_owner (mapping, owner, changed_at, fence) VALUES"
                  " (:m, :o, :c, :f) ON CONFLICT (mapping) DO UPDATE SET owner = excluded.owner,"
                  " changed_at = excluded.changed_at, fence = excluded.fence",
      soci::use(translator.name()), soci::use(name), soci::use(now), soci::use(fence);
  tx.commit();
}

common::Result<Direction> SyncEngine::Impl::flip(bool back, bool force) {
  const Direction wanted = back ? Direction::kForward : Direction::kReverse;
  if (direction() == wanted) {
    return Error{"refused", "mapping '" + translator.name() + "' is already owned by the " +
                                detail::ownerName(wanted)};
  }
  // Drain: ourselves when no one else applies, else wait for the running watch.
  auto drained = runOnce(nullptr, 0);
  bool watch_running = false;
  if (!drained.ok()) {
    if (drained.error().code != "lease_held") return drained.error();
    watch_running = true;
    const Positions fence = positions();
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
    while (!backlog(fence).empty()) {
      if (std::chrono::steady_clock::now() > deadline)
        return Error{"timeout", "the running sync did not catch up within 30 s"};
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
  }
  auto check = verify();
  if (!check.ok()) return check.error();
  if (!check->identical()) {
    if (!force || back) {
      return Error{"refused",
                   "both sides differ (" + std::to_string(check->differing_ranges) +
                       " key ranges); run `sync verify`" +
                       (back ? "" : ", or flip with --force to let the service's rows win")};
    }
    if (watch_running) return Error{"refused", "stop the running `sync watch` to force a flip"};
    // A repair: every service row is copied over the monolith's (a reverse snapshot).
    RunReport report;
    State copy;
    snapshot(Direction::kReverse, copy, report);
  }
  const Positions at = positions();
  setOwner(wanted, "monolith " + at.monolith + " service " + at.service);
  return wanted;
}

std::vector<std::string> SyncEngine::Impl::uninstall() {
  std::vector<std::string> removed;
  if (monolith.logical) {
    for (auto& what : detail::uninstallLogical(monolith))
      removed.push_back("monolith: " + what);
  }
  for (Side* side : {&monolith, &service}) {
    for (auto& what : detail::uninstallCapture(*side, translator.name()))
      removed.push_back(side->name + ": " + what);
    if (!side->tableExists("strangler_changes")) continue;
    common::Transaction tx(*side->sql, side->backend(), common::Transaction::Mode::kWrite);
    const int64_t rows = side->scalar(
        "SELECT COUNT(*) FROM strangler_changes WHERE table_name = '" + side->table + "'");
    const int64_t left = side->scalar(
        "SELECT COUNT(*) FROM strangler_changes WHERE table_name <> '" + side->table + "'");
    if (left == 0) {
      *side->sql << "DROP TABLE strangler_changes";
    } else {
      // Other tables' changes stay, and so do the rows the engine keeps (engine.h keepInLog).
      const std::string keep = side->engine().keepInLog();
      *side->sql << "DELETE FROM strangler_changes WHERE table_name = '" + side->table + "'" +
                        (keep.empty() ? "" : " AND " + keep);
    }
    *side->sql << "DELETE FROM strangler_sync_state WHERE mapping = '" + translator.name() + "'";
    tx.commit();
    removed.push_back(side->name + ": " + std::to_string(rows) + " change rows" +
                      (left == 0 ? ", table strangler_changes" : ""));
  }
  return removed;
}

SyncEngine::SyncEngine(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
SyncEngine::~SyncEngine() = default;

}  // namespace strangler::acl::sync
