#pragma once
// The sync engine's state and its parts, private to the sync's sources. Each job has a file:
// sync_engine.cpp (open, the run/watch loop), sync_ownership.cpp (status, owner, fence,
// uninstall), snapshot_copier.cpp (the
// initial copy in chunks), change_player.cpp (applying change logs), verifier.cpp (comparing
// both sides); change_capture.cpp and change_log.cpp (capture and positions), engine.h with
// engine_sqlite.cpp and engine_postgres.cpp (everything each database does its own way),
// sync_lease.cpp (one applier at a time), row_io.h (bulk reads and writes; row_io_sqlite.h,
// row_io_postgres.h per engine), key_map.h (keys across the sides).

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "change_log.h"
#include "key_map.h"
#include "row_io.h"
#include "strangler/acl/sync_engine.h"
#include "sync_side.h"

namespace strangler::acl::sync {
namespace detail {

struct KnownCommits;  // logical_log.h

constexpr int64_t kRangeWidth = 1024;               // keys per verify range
constexpr int64_t kServiceIdFloor = 1000000000000;  // ids the service allocates

/// One direction's row in strangler_sync_state (kept in that direction's target database).
struct State {
  std::string phase = "new";  ///< new, snapshot, stream
  std::optional<int64_t> last_key;
  int64_t rows_copied = 0;
  int64_t changes_applied = 0;
  Checkpoint checkpoint;
};

/// A direction being applied by this process.
/// A logical read behind the slot's end takes up to this many apply batches
/// (options.change_batch each) at once; caught up, one (a smaller transaction, a shorter lag).
inline constexpr int64_t kLogicalReadFactor = 32;
/// Between reads of a slot that was read to its end, at least this long (ms).
inline constexpr int kLogicalPollMs = 50;

struct Stream {
  explicit Stream(Direction d) : direction(d) {}
  Direction direction;
  State state;        ///< as committed in the target
  Checkpoint cursor;  ///< may run ahead of state.checkpoint over windows without changes
  bool ready = false;
  bool caught_up = true;    ///< a logical source's last read reached the end of its slot
  int64_t read_factor = 1;  ///< batches a logical read takes: doubles while behind, 1 caught up
  std::unique_ptr<ChunkSource> reader;                    ///< the source's current rows
  std::map<std::string, std::unique_ptr<RowSink>> sinks;  ///< per updated-column set
};

inline std::string ownerName(Direction d) {
  return d == Direction::kForward ? "monolith" : "service";
}

/// Which fields a key's changes touched: nullopt for the whole row.
using Delta = std::optional<std::set<std::size_t>>;

}  // namespace detail

struct SyncEngine::Impl {
  Impl(RowTranslator t, SyncOptions o) : translator(std::move(t)), options(std::move(o)) {}

  RowTranslator translator;
  SyncOptions options;
  detail::Side monolith;
  detail::Side service;
  /// How a row's key on one side relates to its key on the other (key_map.h).
  std::unique_ptr<detail::KeyMap> key_map;
  /// Called after each snapshot chunk: keeps the single-writer lease while a long copy runs.
  std::function<void()> heartbeat;
  detail::Stream forward{Direction::kForward};
  detail::Stream reverse{Direction::kReverse};

  detail::Side& sourceOf(Direction d) { return d == Direction::kForward ? monolith : service; }
  detail::Side& targetOf(Direction d) { return d == Direction::kForward ? service : monolith; }
  detail::Stream& streamOf(Direction d) { return d == Direction::kForward ? forward : reverse; }

  // sync_engine.cpp
  Direction direction();
  detail::State readState(detail::Side& target, Direction d);
  void writeState(detail::Side& target, Direction d, const detail::State& s);
  void deadLetter(detail::Side& target, Direction d, int64_t key, const std::string& reason,
                  const Row& row);
  void clearDeadLetter(detail::Side& target, Direction d, int64_t key);
  std::vector<detail::Cls> classesOf(const detail::Side& side) const;
  std::size_t keyIndex(const detail::Side& side) const;
  std::unique_ptr<detail::RowSink> sinkFor(detail::Side& target,
                                           const std::set<std::string>* updated = nullptr);
  std::unique_ptr<detail::ChunkSource> sourceFor(detail::Side& source);
  Translated<Row> translate(Direction d, const Row& row);
  void createServiceTable();
  common::Result<void> install();
  common::Result<RunReport> runOnce(const std::atomic<bool>* stop, int poll_ms);
  common::Result<StatusReport> status();
  common::Result<Direction> flip(bool back, bool force);
  Positions positions();
  Backlog backlog(const Positions& fence);
  void setOwner(Direction owner, const std::string& fence);
  std::vector<std::string> uninstall();

  /// The position of a side's change log now (an LSN for logical capture).
  std::string positionNow(detail::Side& side);

  // snapshot_copier.cpp
  /// Copies every source row of direction `d` in chunks, resumable from state.last_key.
  void snapshot(Direction d, detail::State& state, RunReport& report);

  // change_player.cpp
  /// Makes the reverse stream ready once the forward snapshot is done (capture on the service).
  void startReverseStream();
  /// Applies the next batch of `d`'s change log; returns the change rows it consumed.
  int64_t applyNext(Direction d, RunReport& report);
  /// Deletes change rows both directions' committed checkpoints cover.
  void pruneApplied();
  /// Gives translated rows of `chunk` (moved from the source `d` reads) their keys on the target
  /// side; returns the rows the monolith must allocate a key for (insertAllocated), which are
  /// then left out of `out`-style writes by the caller.
  std::set<std::size_t> retarget(Direction d, detail::Chunk& chunk,
                                 const std::map<int64_t, int64_t>& twin);
  /// Inserts row `r` of a translated chunk into the monolith under a key its allocator picks.
  void insertAllocated(detail::Chunk& chunk, std::size_t r);

  // verifier.cpp
  common::Result<VerifyReport> verify();
  /// Compares both sides by key range (count and checksum, one snapshot each), then the
  /// differing ranges key by key: fills the row and range counts and the untranslatable rows of
  /// `report`, and returns every key that differed.
  /// `meanwhile`, when given, is called between the reads of the scan (the verifier reads its
  /// replication slot on when due, so the slot does not hold the WAL of the whole scan).
  std::vector<int64_t> scanRanges(const detail::ServiceKeys& keys, VerifyReport& report,
                                  const std::function<void()>& meanwhile = {});
  /// Compares differing keys again once the sync applied their pending changes.
  void recheckInFlight(VerifyReport& report, const detail::ServiceKeys& keys);
  /// Those of `keys` with captured changes the sync has not applied yet (either stream).
  /// Keys are the service's (key_map.h). With `known` (a verifier's own slot), a logical stream
  /// whose checkpoint has passed known->since is looked up there instead of in the sync's slot.
  std::set<int64_t> pendingKeys(const std::vector<int64_t>& keys,
                                const detail::ServiceKeys& service_keys,
                                detail::KnownCommits* known = nullptr);
  /// Whether both directions stream changes (their snapshots are done).
  bool streaming();
  /// Whether a running sync holds the lease (so waiting for it to apply helps).
  bool leaseHeld();

  // verify_watch.cpp
  common::Result<WatchRound> verifyWatch(const std::atomic<bool>& stop,
                                         const VerifyWatchOptions& watch);
  /// verify() while both change streams run: scanRanges() between the verifier's own positions
  /// on both streams, then the differing keys settled as a watch round settles them.
  common::Result<VerifyReport> verifyStreaming();

 private:
  void applyRows(detail::Stream& s, const std::vector<detail::ChangeRow>& rows,
                 const detail::Checkpoint& next, RunReport& report);
};

}  // namespace strangler::acl::sync
