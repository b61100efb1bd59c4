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

/// Which way rows flow: forward = monolith → service (before the flip), reverse = service →
/// monolith (after the service took the writes over).
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
  Direction direction = Direction::kForward;
  int64_t changes = 0;          ///< distinct keys applied (echoes skipped are not counted)
  int64_t last_seq = 0;         ///< the checkpoint after this batch
  int64_t newest_change_s = 0;  ///< capture time (Unix seconds) of the batch's newest change
};

struct SyncOptions {
  int64_t chunk_rows = 5000;    ///< rows per snapshot chunk (one transaction each)
  int64_t change_batch = 1000;  ///< changes per apply batch (one transaction each)
  std::function<void(const Progress&)> on_progress;
  /// Called on the applying thread after each batch of changes commits (lag and rate figures).
  std::function<void(const BatchApplied&)> on_batch;
};

struct RunReport {
  Direction direction = Direction::kForward;
  int64_t snapshot_rows = 0;    ///< rows copied by the snapshot in this run
  int64_t changes_applied = 0;  ///< captured changes applied in this run
  int64_t echoes_skipped = 0;   ///< changes written by the sync itself, not sent back
  int64_t dead_letters = 0;     ///< rows quarantined in this run
};

struct StatusReport {
  Direction direction = Direction::kForward;
  std::string phase;  ///< "new", "snapshot", "stream"
  std::optional<int64_t> snapshot_last_key;
  int64_t rows_copied = 0;
  int64_t changes_applied = 0;
  int64_t last_seq = 0;
  int64_t pending_changes = 0;
  std::optional<int64_t> oldest_pending_age_s;
  int64_t dead_letters = 0;
};

struct VerifyReport {
  Direction direction = Direction::kForward;
  int64_t source_rows = 0;
  int64_t target_rows = 0;
  int64_t ranges = 0;  ///< key ranges compared by count and checksum
  int64_t differing_ranges = 0;
  std::vector<int64_t> differing_keys;      ///< at most 100
  std::vector<std::string> untranslatable;  ///< source rows the translator rejects (at most 100)
  int64_t dead_letters = 0;
  bool identical() const { return differing_ranges == 0 && untranslatable.empty(); }
};

/// The data-sync job between a monolith database and a service database, for one mapping.
/// Change capture is a trigger-fed change table (transactional outbox) in the source database;
/// the checkpoint, dead letters and ownership live in the target database and are committed
/// in the same transaction as the rows they describe, so the job can be killed at any point.
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
  /// Snapshot if not done, then applies captured changes until none are pending.
  common::Result<RunReport> run();
  /// Like run(), then keeps applying changes every `poll_ms` until `stop` becomes true.
  common::Result<RunReport> watch(const std::atomic<bool>& stop, int poll_ms = 200);
  /// Compares both sides through the translator: counts and checksums per key range, then keys.
  common::Result<VerifyReport> verify();
  /// Checkpoint, lag and counters.
  common::Result<StatusReport> status();
  /// Moves ownership to the service (reverse direction) or, with `back`, to the monolith.
  /// Drains pending changes first and refuses when the two sides differ, unless `force`: then
  /// the service's rows win, all of them copied back to the monolith by the next run.
  common::Result<Direction> flip(bool back, bool force = false);

  struct Impl;

 private:
  explicit SyncEngine(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace strangler::acl::sync
