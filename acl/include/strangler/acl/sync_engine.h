#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "strangler/acl/row_translator.h"
#include "strangler/common/result.h"

namespace strangler::acl::sync {

/// Which side owns the mapping's rows, named by the way the owner's writes flow: forward =
/// the monolith owns them (before the flip), reverse = the service owns them (after it). Both
/// directions stream all the time; the owner's side wins when both change the same column of
/// a row at once.
enum class Direction { kForward, kReverse };
const char* toString(Direction direction);

/// Snapshot progress, reported after every chunk.
struct Progress {
  int64_t rows_done = 0;
  int64_t rows_total = 0;
  double rows_per_second = 0;
};

/// One committed batch of captured changes, reported after its transaction commits.
struct BatchApplied {
  Direction direction = Direction::kForward;  ///< the stream: forward = monolith → service
  int64_t changes = 0;                        ///< distinct keys applied
  std::string position;                       ///< the checkpoint after this batch
  int64_t newest_change_s = 0;  ///< capture time (Unix seconds) of the batch's newest change
};

struct SyncOptions {
  int64_t chunk_rows = 5000;    ///< rows per snapshot chunk (one transaction each)
  int64_t change_batch = 1000;  ///< changes per apply batch (one transaction each)
  std::function<void(const Progress&)> on_progress;
  /// Called on the applying thread after each batch of changes commits (lag and rate figures).
  std::function<void(const BatchApplied&)> on_batch;
  /// Who holds the single-writer lease while this engine applies (default: host:pid).
  std::string lease_holder;
  int lease_ttl_ms = 5000;
  /// How the monolith's changes are captured: "logical" (PostgreSQL's WAL through a replication
  /// slot and wal2json: nothing added to the monolith's writes), "trigger" (a change table fed
  /// by triggers), or "auto": what an earlier run installed, else logical on a PostgreSQL server
  /// with wal_level=logical, else trigger.
  std::string capture = "auto";
};

struct RunReport {
  Direction direction = Direction::kForward;  ///< the owner
  int64_t snapshot_rows = 0;                  ///< rows copied by the snapshot in this run
  int64_t changes_applied = 0;                ///< keys applied monolith → service in this run
  int64_t reverse_applied = 0;                ///< keys applied service → monolith in this run
  int64_t conflicts = 0;     ///< columns both sides changed at once: the owner's value was kept
  int64_t dead_letters = 0;  ///< rows quarantined in this run
};

/// Where each side's change log stands: what a fenced cutover drains to.
struct Positions {
  std::string monolith;
  std::string service;
};

/// Captured changes at or before a fence that the sync has not applied yet, per stream.
struct Backlog {
  int64_t forward = 0;  ///< monolith → service
  int64_t reverse = 0;  ///< service → monolith
  bool empty() const { return forward == 0 && reverse == 0; }
};

/// Who holds the single-writer lease (a running `sync watch`, `run` or `flip`).
struct LeaseInfo {
  std::string holder;
  int64_t expires_in_ms = 0;
};

struct StatusReport {
  Direction direction = Direction::kForward;  ///< the owner
  std::string phase;                          ///< "new", "snapshot", "stream"
  std::optional<int64_t> snapshot_last_key;
  int64_t rows_copied = 0;
  int64_t changes_applied = 0;   ///< monolith → service, since the start
  int64_t reverse_applied = 0;   ///< service → monolith, since the start
  std::string position;          ///< forward checkpoint (monolith change log)
  std::string reverse_position;  ///< reverse checkpoint (service change log)
  int64_t pending_changes = 0;   ///< captured, not yet applied (both streams)
  int64_t reverse_pending = 0;   ///< of which service → monolith
  std::optional<int64_t> oldest_pending_age_s;
  int64_t dead_letters = 0;
  std::optional<LeaseInfo> lease;
  std::string fence;                      ///< the fence the last ownership change was made at
  std::string capture;                    ///< "trigger" or "logical" (the monolith's side)
  std::optional<int64_t> slot_lag_bytes;  ///< logical: WAL the slot holds behind the end
  /// How keys relate across the sides: "shared" (a row has one key on both) or "mapped" (rows
  /// the service created have a key of the monolith's own in the monolith: strangler_key_map).
  std::string key_mode;
  int64_t mapped_keys = 0;  ///< pairs in the key map
};

struct VerifyReport {
  Direction direction = Direction::kForward;
  int64_t source_rows = 0;
  int64_t target_rows = 0;
  int64_t ranges = 0;  ///< key ranges compared by count and checksum
  int64_t differing_ranges = 0;
  std::vector<int64_t> differing_keys;  ///< at most 100
  /// Keys that differed while a captured change to them was still being applied: lag, not a
  /// difference (each was compared again once the sync had applied up to then).
  std::vector<int64_t> in_flight;
  std::vector<std::string> untranslatable;  ///< source rows the translator rejects (at most 100)
  int64_t dead_letters = 0;
  bool identical() const { return differing_ranges == 0 && untranslatable.empty(); }
};

/// One round of `sync verify --watch`: round 0 is the full pass, later rounds compare only the
/// keys the change streams touched since the round before.
struct WatchRound {
  int64_t round = 0;
  bool full_pass = false;
  std::string note;       ///< why a full pass was made again, when it was
  VerifyReport report;    ///< the state after this round; source/target_rows: rows each side has
  int64_t differing = 0;  ///< keys that differ (report.differing_keys lists at most 100)
  int64_t keys_rechecked = 0;  ///< keys read again from both sides in this round
  int64_t millis = 0;          ///< how long the round took
  // Where it went (rounds after the full pass): reading the change streams, reading the keys
  // again from both sides, settling the keys that still differed (pending lookups, waits).
  int64_t changes_millis = 0;
  int64_t reread_millis = 0;
  int64_t settle_millis = 0;
  int64_t memory_bytes = 0;  ///< what the kept per-key hashes take
  /// Reads of the verifier's replication slot made during full passes so far (logical capture).
  int64_t drains = 0;
};

struct VerifyWatchOptions {
  int interval_ms = 5000;  ///< from the start of one round to the start of the next
  int64_t rounds = 0;      ///< rounds after the full pass; 0: until `stop`
  /// How long a registration on a change log (strangler_readers) holds pruning back after the
  /// verifier stopped renewing it (it is renewed every round).
  int reader_ttl_s = 60;
  /// During a full pass, the verifier's replication slot (logical capture) is read on this often,
  /// so the slot does not keep the WAL of the whole pass.
  int drain_every_ms = 10000;
  /// Called after each round on the verifying thread (the full pass included).
  std::function<void(const WatchRound&)> on_round;
};

/// The data-sync job between a monolith database and a service database, for one mapping.
/// Change capture is a trigger-fed change log in each database (no lock beyond the row it
/// writes); the checkpoint and dead letters of each stream live in its target database and are
/// committed in the same transaction as the rows they describe, so the job can be killed at any
/// point. One process at a time applies (a lease).
class SyncEngine {
 public:
  /// Opens both databases and checks the mapping against them; fails before any write when a
  /// connection string is bad, a database unreachable or a mapped legacy column missing.
  static common::Result<std::unique_ptr<SyncEngine>> open(const std::string& monolith_db,
                                                          const std::string& service_db,
                                                          const std::string& mapping,
                                                          SyncOptions options = {});
  ~SyncEngine();

  /// Creates the sync's tables, the service table when missing, and the capture triggers.
  common::Result<void> install();
  /// Snapshot if not done, then applies captured changes both ways until none are pending.
  /// Refused ("lease_held") while another process holds the lease.
  common::Result<RunReport> run();
  /// Like run(), then keeps applying changes every `poll_ms` until `stop` becomes true.
  common::Result<RunReport> watch(const std::atomic<bool>& stop, int poll_ms = 50);
  /// Compares both sides through the translator: counts and checksums per key range, then keys.
  common::Result<VerifyReport> verify();
  /// Like verify(), then keeps the comparison current from the change streams: each round
  /// compares only the keys changed since the round before (its own reading of both sides'
  /// capture, which never disturbs a running watch). Refused ("not_streaming") while the sync is
  /// still copying its snapshot. Returns the last round.
  common::Result<WatchRound> verifyWatch(const std::atomic<bool>& stop,
                                         const VerifyWatchOptions& options);
  /// Checkpoint, lag and counters.
  common::Result<StatusReport> status();
  /// Moves ownership to the service (reverse direction) or, with `back`, to the monolith.
  /// Drains pending changes first (itself, or by waiting for the running watch) and refuses
  /// when the two sides differ, unless `force`: then the service's rows are all copied over
  /// the monolith's (a repair; needs the lease). Not fenced: see `routes extract --with-data`.
  common::Result<Direction> flip(bool back, bool force = false);

  // ---- the fenced cutover's steps (migrate-cli drives them with the proxies' hold) ----------

  /// The current end of both change logs.
  common::Result<Positions> positions();
  /// Changes at or before `fence` that the sync has not applied yet.
  common::Result<Backlog> backlog(const Positions& fence);
  /// The live lease holder, if any.
  common::Result<std::optional<LeaseInfo>> lease();
  /// The owner now.
  common::Result<Direction> owner();
  /// Records a new owner and the fence it was decided at, in one transaction; applies nothing.
  common::Result<void> setOwner(Direction owner, const std::string& fence);
  /// Removes what install() put into the monolith's and the service's databases: triggers,
  /// functions and the change logs (the copied rows and the sync's state stay). Returns what it
  /// removed. Refused while another process holds the lease.
  common::Result<std::vector<std::string>> uninstall();

  struct Impl;

 private:
  explicit SyncEngine(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace strangler::acl::sync
