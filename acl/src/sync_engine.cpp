#include "strangler/acl/sync_engine.h"

#include <soci/soci.h>

#include <chrono>
#include <map>
#include <set>
#include <stdexcept>
#include <thread>

#include "change_capture.h"
#include "change_log.h"
#include "logical_log.h"
#include "row_io_postgres.h"
#include "row_io_sqlite.h"
#include "strangler/common/db.h"
#include "sync_engine_impl.h"
#include "sync_lease.h"

namespace strangler::acl::sync {

using common::DbBackend;
using common::Error;
using detail::canonical;
using detail::Checkpoint;
using detail::Cls;
using detail::ColumnType;
using detail::legacyCls;
using detail::nowSeconds;
using detail::serviceCls;
using detail::Side;
using detail::State;
using Int = long long;

const char* toString(Direction direction) {
  return direction == Direction::kForward ? "forward" : "reverse";
}

namespace {

bool isRetryable(const soci::soci_error& e) {
  const std::string what = e.what();
  return detail::lockBusy(e) || what.find("deadlock detected") != std::string::npos ||
         what.find("could not serialize") != std::string::npos;
}

/// Holds the single-writer lease for a run or a watch; renews it and gives it up at the end.
class LeaseGuard {
 public:
  LeaseGuard(Side& side, std::string mapping, std::string holder, int ttl_ms)
      : side_(side), mapping_(std::move(mapping)), holder_(std::move(holder)), ttl_ms_(ttl_ms) {}
  ~LeaseGuard() {
    if (!held_) return;
    try {
      detail::releaseLease(side_, mapping_, holder_);
    } catch (const std::exception&) {
      // It expires by itself.
    }
  }
  LeaseGuard(const LeaseGuard&) = delete;
  LeaseGuard& operator=(const LeaseGuard&) = delete;

  /// Takes or renews the lease; an error names the live holder.
  common::Result<void> take() {
    auto other = detail::acquireLease(side_, mapping_, holder_, ttl_ms_);
    if (other) {
      return Error{"lease_held", "mapping '" + mapping_ + "' is being applied by " + other->holder +
                                     " (its lease runs " + std::to_string(other->expires_in_ms) +
                                     " ms more); only one sync may apply at a time"};
    }
    held_ = true;
    renewed_ = std::chrono::steady_clock::now();
    return {};
  }
  /// Renews when a third of the TTL has passed.
  common::Result<void> keep() {
    if (std::chrono::steady_clock::now() - renewed_ < std::chrono::milliseconds(ttl_ms_ / 3))
      return {};
    return take();
  }

 private:
  Side& side_;
  std::string mapping_;
  std::string holder_;
  int ttl_ms_;
  bool held_ = false;
  std::chrono::steady_clock::time_point renewed_;
};

}  // namespace

// ---- ownership and state ------------------------------------------------------------------

Direction SyncEngine::Impl::direction() {
  if (!service.tableExists("strangler_sync_owner")) return Direction::kForward;
  std::string owner;
  soci::indicator ind = soci::i_null;
  *service.sql << "SELECT owner FROM strangler_sync_owner WHERE mapping = :m",
      soci::use(translator.name()), soci::into(owner, ind);
  return ind == soci::i_ok && owner == "service" ? Direction::kReverse : Direction::kForward;
}

State SyncEngine::Impl::readState(Side& target, Direction d) {
  State state;
  if (!target.tableExists("strangler_sync_state")) return state;
  std::string phase, position, window_to;
  Int last_key = 0, last_seq = 0, rows = 0, applied = 0, window_seq = 0;
  soci::indicator phase_ind = soci::i_null, key_ind = soci::i_null, pos_ind = soci::i_null,
                  win_ind = soci::i_null, wseq_ind = soci::i_null;
  const std::string dir = toString(d);
  *target.sql << "SELECT phase, last_key, last_seq, rows_copied, changes_applied, position,"
                 " window_to, window_seq FROM strangler_sync_state WHERE mapping = :m AND"
                 " direction = :d",
      soci::use(translator.name()), soci::use(dir), soci::into(phase, phase_ind),
      soci::into(last_key, key_ind), soci::into(last_seq), soci::into(rows), soci::into(applied),
      soci::into(position, pos_ind), soci::into(window_to, win_ind),
      soci::into(window_seq, wseq_ind);
  if (phase_ind != soci::i_ok) return state;
  state.phase = phase;
  if (key_ind == soci::i_ok) state.last_key = last_key;
  state.rows_copied = rows;
  state.changes_applied = applied;
  if (pos_ind == soci::i_ok && !position.empty()) {
    state.checkpoint.position = position;
  } else {
    // Written by a version that kept a sequence number.
    Side& source = d == Direction::kForward ? monolith : service;
    state.checkpoint.position =
        source.logical ? positionNow(source) : source.engine().positionFromSeq(source, last_seq);
  }
  if (win_ind == soci::i_ok && !window_to.empty()) {
    state.checkpoint.window_to = window_to;
    state.checkpoint.window_seq = wseq_ind == soci::i_ok ? window_seq : 0;
  }
  return state;
}

// Written inside the caller's transaction, together with the rows it accounts for.
void SyncEngine::Impl::writeState(Side& target, Direction d, const State& s) {
  const std::string dir = toString(d);
  Int last_key = s.last_key.value_or(0);
  soci::indicator key_ind = s.last_key ? soci::i_ok : soci::i_null;
  const std::string window_to = s.checkpoint.window_to.value_or("");
  soci::indicator win_ind = s.checkpoint.window_to ? soci::i_ok : soci::i_null;
  Int window_seq = s.checkpoint.window_seq, rows = s.rows_copied, applied = s.changes_applied,
      now = detail::nowSeconds(), zero = 0;
  const Side& source = d == Direction::kForward ? monolith : service;
  const std::string capture = source.logical ? "logical" : "trigger";
  *target.sql
      << "INSERT INTO strangler_sync_state (mapping, direction, phase, last_key, stream_from,"
         " last_seq, rows_copied, changes_applied, updated_at, position, window_to, window_seq,"
         " capture) VALUES (:m, :d, :p, :k, :f, :s, :r, :a, :u, :pos, :w, :ws, :cap) ON CONFLICT"
         " (mapping, direction) DO UPDATE SET phase = excluded.phase, last_key ="
         " excluded.last_key, rows_copied = excluded.rows_copied, changes_applied ="
         " excluded.changes_applied, updated_at = excluded.updated_at, position ="
         " excluded.position, window_to = excluded.window_to, window_seq = excluded.window_seq,"
         " capture = excluded.capture",
      soci::use(translator.name()), soci::use(dir), soci::use(s.phase),
      soci::use(last_key, key_ind), soci::use(zero), soci::use(zero), soci::use(rows),
      soci::use(applied), soci::use(now), soci::use(s.checkpoint.position),
      soci::use(window_to, win_ind), soci::use(window_seq), soci::use(capture);
}

void SyncEngine::Impl::createServiceTable() {
  if (service.tableExists(service.table)) return;
  const detail::Engine& engine = service.engine();
  std::string ddl = "CREATE TABLE IF NOT EXISTS " + service.table + " (";
  bool first = true;
  for (const auto& f : translator.fields()) {
    ddl += first ? "" : ", ";
    first = false;
    if (f.service == service.key) {
      ddl += f.service + " " + engine.serviceKeyType();
      continue;
    }
    const auto type = detail::serviceType(f.kind);
    ddl += f.service + (type == ColumnType::kInteger ? " BIGINT"
                        : type == ColumnType::kReal  ? " " + engine.realType()
                                                     : " TEXT");
    if (!f.nullable) ddl += " NOT NULL";
  }
  ddl += ")";
  common::Transaction tx(*service.sql, service.backend(), common::Transaction::Mode::kWrite);
  *service.sql << ddl;
  tx.commit();
}

void SyncEngine::Impl::deadLetter(Side& target, Direction d, int64_t key, const std::string& reason,
                                  const Row& row) {
  const std::string dir = toString(d);
  Int pk = key, now = nowSeconds();
  const std::string text = canonical(row).substr(0, 3900);
  *target.sql << "INSERT INTO strangler_dead_letters (mapping, direction, pk, reason, row_text,"
                 " created_at) VALUES (:m, :d, :k, :r, :t, :c) ON CONFLICT (mapping, direction,"
                 " pk) DO UPDATE SET reason = excluded.reason, row_text = excluded.row_text,"
                 " created_at = excluded.created_at",
      soci::use(translator.name()), soci::use(dir), soci::use(pk), soci::use(reason),
      soci::use(text), soci::use(now);
}

void SyncEngine::Impl::clearDeadLetter(Side& target, Direction d, int64_t key) {
  const std::string dir = toString(d);
  Int pk = key;
  *target.sql << "DELETE FROM strangler_dead_letters WHERE mapping = :m AND direction = :d"
                 " AND pk = :k",
      soci::use(translator.name()), soci::use(dir), soci::use(pk);
}

std::vector<Cls> SyncEngine::Impl::classesOf(const Side& side) const {
  std::vector<Cls> classes;
  for (const auto& f : translator.fields())
    classes.push_back(&side == &monolith ? legacyCls(f) : serviceCls(f));
  return classes;
}

std::size_t SyncEngine::Impl::keyIndex(const Side& side) const {
  for (std::size_t i = 0; i < side.columns.size(); ++i)
    if (side.columns[i] == side.key) return i;
  return 0;
}

std::unique_ptr<detail::RowSink> SyncEngine::Impl::sinkFor(Side& target,
                                                           const std::set<std::string>* updated) {
  auto classes = classesOf(target);
  for (const auto& [column, value] : target.constants)
    classes.push_back(std::holds_alternative<int64_t>(value) ? Cls::kInt : Cls::kText);
  return target.engine().rowSink(target, std::move(classes), updated);
}

std::unique_ptr<detail::ChunkSource> SyncEngine::Impl::sourceFor(Side& source) {
  return source.engine().chunkSource(source, classesOf(source), keyIndex(source),
                                     options.chunk_rows);
}

Translated<Row> SyncEngine::Impl::translate(Direction d, const Row& row) {
  return d == Direction::kForward ? translator.toService(row) : translator.toLegacy(row);
}

common::Result<void> SyncEngine::Impl::install() {
  detail::ensureSyncTables(monolith);
  detail::ensureSyncTables(service);
  createServiceTable();
  key_map->install();
  if (monolith.logical) {
    // A slot is created once, before the first snapshot. Missing later, changes since it went
    // are gone from the WAL's reach: say so rather than start a new slot over the gap.
    detail::settleSlot(monolith);
    if (!detail::slotState(monolith).exists &&
        readState(service, Direction::kForward).phase != "new") {
      throw soci::soci_error("the replication slot " + monolith.slot +
                             " is gone (dropped, or invalidated when it fell too far behind): "
                             "run `strangler sync uninstall`, then `strangler sync run` to copy "
                             "the rows again");
    }
    detail::installLogical(monolith);
  } else {
    detail::installCapture(monolith, translator.name());
  }
  return {};
}

std::string SyncEngine::Impl::positionNow(Side& side) {
  return side.logical ? detail::currentLsn(side) : detail::currentPosition(side);
}

// ---- the run and watch loop -----------------------------------------------------------------

common::Result<RunReport> SyncEngine::Impl::runOnce(const std::atomic<bool>* stop, int poll_ms) {
  auto installed = install();
  if (!installed.ok()) return installed.error();
  LeaseGuard lease(service, translator.name(), options.lease_holder, options.lease_ttl_ms);
  if (auto taken = lease.take(); !taken.ok()) return taken.error();
  heartbeat = [&lease] {
    if (auto kept = lease.keep(); !kept.ok()) throw std::runtime_error(kept.error().message);
  };
  struct ClearHeartbeat {
    std::function<void()>& beat;
    ~ClearHeartbeat() { beat = nullptr; }
  } clear_heartbeat{heartbeat};
  RunReport report;
  report.direction = direction();
  State state = readState(service, Direction::kForward);
  if (state.phase != "stream") snapshot(Direction::kForward, state, report);
  startReverseStream();
  forward.ready = reverse.ready = false;  // re-read the checkpoints this run starts from
  auto last_prune = std::chrono::steady_clock::now();
  int retries = 0;
  for (;;) {
    int64_t consumed = 0;
    int64_t reverse_consumed = 0;
    try {
      consumed += applyNext(Direction::kForward, report);
      reverse_consumed = applyNext(Direction::kReverse, report);
      consumed += reverse_consumed;
      retries = 0;
    } catch (const soci::soci_error& e) {
      // A row the batch needed was locked by the application (or a deadlock was broken in the
      // application's favour): the batch rolled back; the same window is read again.
      if (!isRetryable(e) || ++retries > 50) throw;
      forward.ready = reverse.ready = false;
      std::this_thread::sleep_for(std::chrono::milliseconds(20 * retries));
      consumed = 1;
    }
    if (auto kept = lease.keep(); !kept.ok()) return kept.error();
    if (std::chrono::steady_clock::now() - last_prune > std::chrono::seconds(5)) {
      pruneApplied();
      last_prune = std::chrono::steady_clock::now();
    }
    if (stop != nullptr && stop->load()) break;
    // A logical source read to its end waits before the next read even when it had changes:
    // each read decodes again from the slot's restart point (change_player.cpp).
    const bool logical_caught_up = monolith.logical && forward.caught_up;
    if (consumed > 0 && (!logical_caught_up || reverse_consumed > 0)) continue;
    if (stop == nullptr && consumed == 0) break;
    if (stop == nullptr) continue;
    std::this_thread::sleep_for(std::chrono::milliseconds(
        monolith.logical ? std::max(poll_ms, detail::kLogicalPollMs) : poll_ms));
  }
  pruneApplied();
  report.direction = direction();
  return report;
}

common::Result<std::unique_ptr<SyncEngine>> SyncEngine::open(const std::string& monolith_db,
                                                             const std::string& service_db,
                                                             const std::string& mapping,
                                                             SyncOptions options) {
  using R = common::Result<std::unique_ptr<SyncEngine>>;
  auto translator = RowTranslator::load(mapping);
  if (!translator.ok()) return translator.error();
  const auto* key_field = [&]() -> const FieldMapping* {
    for (const auto& f : translator->fields())
      if (f.legacy == translator->legacyKey()) return &f;
    return nullptr;
  }();
  if (key_field == nullptr || key_field->kind != FieldKind::kInteger) {
    return Error{"invalid_mapping", "the sync needs an integer key column"};
  }
  auto from = common::parseConnectionString(monolith_db);
  if (!from.ok()) return Error{"usage", "--from: " + from.error().message};
  auto to = common::parseConnectionString(service_db);
  if (!to.ok()) return Error{"usage", "--to: " + to.error().message};
  if (options.lease_holder.empty()) options.lease_holder = detail::defaultHolder();
  auto impl = std::make_unique<Impl>(translator.value(), std::move(options));
  impl->monolith.name = "monolith";
  impl->monolith.target = *from;
  impl->monolith.table = translator->legacyTable();
  impl->monolith.key = translator->legacyKey();
  impl->monolith.constants = translator->legacyConstants();
  impl->service.name = "service";
  impl->service.target = *to;
  impl->service.table = translator->serviceTable();
  impl->service.key = translator->serviceKey();
  for (const auto& f : translator->fields()) {
    impl->monolith.columns.push_back(f.legacy);
    impl->service.columns.push_back(f.service);
    const bool integer_codes =
        !f.enum_values.empty() && std::holds_alternative<int64_t>(f.enum_values.front().first);
    impl->monolith.integer_columns.push_back(
        f.kind == FieldKind::kInteger || f.kind == FieldKind::kMicroDegrees ||
        f.kind == FieldKind::kCents || (f.kind == FieldKind::kEnum && integer_codes));
    impl->service.integer_columns.push_back(f.kind == FieldKind::kInteger);
  }
  for (Side* side : {&impl->monolith, &impl->service}) {
    try {
      side->sql = std::make_unique<soci::session>();
      common::openSession(*side->sql, side->target);
      side->engine().configureSession(*side->sql);
    } catch (const std::exception& e) {
      return Error{"unreachable", "cannot open the " + side->name + " database (" +
                                      side->target.original + "): " + e.what()};
    }
  }
  // The monolith's capture: what an earlier run installed wins, then the option.
  try {
    Side& mono = impl->monolith;
    std::string installed;
    if (impl->service.tableExists("strangler_sync_state") &&
        impl->service.columnExists("strangler_sync_state", "capture")) {
      soci::indicator ind = soci::i_null;
      std::string name = impl->translator.name();
      *impl->service.sql << "SELECT capture FROM strangler_sync_state WHERE mapping = :m AND"
                            " direction = 'forward'",
          soci::use(name), soci::into(installed, ind);
      if (ind != soci::i_ok) installed.clear();
    }
    const std::string wanted = impl->options.capture;
    if (wanted != "auto" && wanted != "trigger" && wanted != "logical")
      return Error{"usage", "--capture: '" + wanted + "' is not auto, trigger or logical"};
    if (!installed.empty() && wanted != "auto" && wanted != installed) {
      return Error{"refused", "this sync was set up with " + installed +
                                  " capture; to change it, `strangler sync uninstall` first"};
    }
    const std::string chosen = !installed.empty() ? installed
                               : wanted == "auto"
                                   ? (detail::logicalAvailable(mono) ? "logical" : "trigger")
                                   : wanted;
    if (chosen == "logical") {
      if (!detail::logicalAvailable(mono)) {
        return Error{"refused",
                     "logical capture needs a PostgreSQL monolith with wal_level=logical"};
      }
      mono.logical = true;
      mono.slot = detail::slotName(mono, impl->translator.name());
      mono.slot_sql = std::make_unique<soci::session>();
      common::openSession(*mono.slot_sql, mono.target);
    }
  } catch (const soci::soci_error& e) {
    return Error{"unreachable", std::string("cannot inspect the monolith's capture: ") + e.what()};
  }
  // Everything the sync reads must exist before it writes anything.
  try {
    if (!impl->monolith.tableExists(impl->monolith.table)) {
      return Error{"missing_table",
                   "the monolith database has no table '" + impl->monolith.table + "'"};
    }
    impl->monolith.fetch("SELECT " + impl->monolith.selectList() + " FROM " + impl->monolith.table +
                         " WHERE 1 = 0");
    impl->key_map = std::make_unique<detail::KeyMap>(impl->monolith, impl->translator.name(),
                                                     detail::kServiceIdFloor);
    impl->key_map->open();
  } catch (const soci::soci_error& e) {
    return Error{"missing_column", "the monolith table '" + impl->monolith.table +
                                       "' lacks a mapped column: " + e.what()};
  }
  return R(std::unique_ptr<SyncEngine>(new SyncEngine(std::move(impl))));
}

namespace {

template <typename Fn>
auto guarded(Fn fn) -> decltype(fn()) {
  try {
    return fn();
  } catch (const soci::soci_error& e) {
    return Error{"database_error", e.what()};
  } catch (const std::runtime_error& e) {
    return Error{"sync_error", e.what()};
  }
}

}  // namespace

common::Result<void> SyncEngine::install() {
  return guarded([&] { return impl_->install(); });
}
common::Result<RunReport> SyncEngine::run() {
  return guarded([&] { return impl_->runOnce(nullptr, 0); });
}
common::Result<RunReport> SyncEngine::watch(const std::atomic<bool>& stop, int poll_ms) {
  return guarded([&] { return impl_->runOnce(&stop, poll_ms); });
}
common::Result<VerifyReport> SyncEngine::verify() {
  return guarded([&] { return impl_->verify(); });
}
common::Result<WatchRound> SyncEngine::verifyWatch(const std::atomic<bool>& stop,
                                                   const VerifyWatchOptions& options) {
  return guarded([&] { return impl_->verifyWatch(stop, options); });
}
common::Result<StatusReport> SyncEngine::status() {
  return guarded([&] { return impl_->status(); });
}
common::Result<Direction> SyncEngine::flip(bool back, bool force) {
  return guarded([&] { return impl_->flip(back, force); });
}
common::Result<Positions> SyncEngine::positions() {
  return guarded([&]() -> common::Result<Positions> { return impl_->positions(); });
}
common::Result<Backlog> SyncEngine::backlog(const Positions& fence) {
  return guarded([&]() -> common::Result<Backlog> { return impl_->backlog(fence); });
}
common::Result<std::optional<LeaseInfo>> SyncEngine::lease() {
  return guarded([&]() -> common::Result<std::optional<LeaseInfo>> {
    if (!impl_->service.tableExists("strangler_sync_lease")) return std::optional<LeaseInfo>();
    auto held = detail::currentLease(impl_->service, impl_->translator.name());
    if (!held) return std::optional<LeaseInfo>();
    return std::optional<LeaseInfo>(LeaseInfo{held->holder, held->expires_in_ms});
  });
}
common::Result<Direction> SyncEngine::owner() {
  return guarded([&]() -> common::Result<Direction> { return impl_->direction(); });
}
common::Result<void> SyncEngine::setOwner(Direction owner, const std::string& fence) {
  return guarded([&]() -> common::Result<void> {
    impl_->setOwner(owner, fence);
    return {};
  });
}
common::Result<std::vector<std::string>> SyncEngine::uninstall() {
  return guarded([&]() -> common::Result<std::vector<std::string>> {
    LeaseGuard lease(impl_->service, impl_->translator.name(), impl_->options.lease_holder,
                     impl_->options.lease_ttl_ms);
    if (auto taken = lease.take(); !taken.ok()) return taken.error();
    return impl_->uninstall();
  });
}

}  // namespace strangler::acl::sync
