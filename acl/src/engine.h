#pragma once
// What the sync does differently on each database, behind one interface. Everything else in the
// sync (snapshot_copier.cpp, change_player.cpp, verifier.cpp, ...) is written once and asks the
// side's Engine, never which database it is on.
//
//   engine_sqlite.cpp     SQLite: rowid change log, triggers gated by a strangler_applying row,
//                         sqlite3_* bulk reads and writes (row_io_sqlite.h)
//   engine_postgres.cpp   PostgreSQL: txid-stamped change log read by snapshot visibility,
//                         triggers gated by a session setting, COPY (row_io_postgres.h); the
//                         WAL capture is logical_log.cpp
//
// A third engine (MySQL/MariaDB through SOCI's mysql backend) is one more engine_*.cpp that
// implements this class, and one line in engineFor(). Positions are opaque text to the rest of
// the sync: each engine defines what a position is and how change rows are compared with it.

#include <soci/soci.h>

#include <cstdint>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "strangler/common/db.h"

namespace strangler::acl::sync::detail {

struct Side;
struct Checkpoint;
class ChunkSource;
class RowSink;
enum class Cls;

class Engine {
 public:
  virtual ~Engine() = default;

  // --- sessions and catalog
  /// Per-session settings the sync relies on (run once after connecting).
  virtual void configureSession(soci::session& sql) const = 0;
  virtual bool tableExists(soci::session& sql, const std::string& table) const = 0;
  virtual bool columnExists(soci::session& sql, const std::string& table,
                            const std::string& column) const = 0;
  /// Starts a read-only transaction that sees one snapshot until it ends.
  virtual std::string beginSnapshot() const = 0;
  /// Integer columns are selected as text and parsed back (SQLite: SOCI reads INTEGER as 32 bits).
  virtual bool integersAsText() const = 0;

  // --- types of the columns the sync creates
  virtual std::string changeSeqType() const = 0;   ///< strangler_changes.seq
  virtual std::string serviceKeyType() const = 0;  ///< a service table's generated key
  virtual std::string realType() const = 0;
  virtual std::string bigintType() const = 0;

  // --- trigger capture (change_capture.cpp holds what is common)
  /// Indexes strangler_changes needs beyond its primary key.
  virtual void indexChangeLog(Side& side) const = 0;
  /// Creates (or replaces) the capture triggers named from `prefix` on the side's table.
  /// `patient`: wait longer for the table's lock (a retry after the session's short wait ran
  /// out: long enough for PostgreSQL to cancel an autovacuum that holds the table).
  virtual void installTriggers(Side& side, const std::string& prefix, bool patient) const = 0;
  /// Drops them; returns what it dropped ("trigger x", "function y()").
  virtual std::vector<std::string> dropTriggers(Side& side, const std::string& prefix) const = 0;
  /// In the sync's own write transaction: the triggers (and the WAL decoder) skip its writes.
  virtual void markApplying(Side& side) const = 0;
  virtual void unmarkApplying(Side& side) const = 0;
  /// Locks rows by key until the transaction ends (where the engine locks rows at all).
  virtual void lockRows(Side& side, const std::string& key_list) const = 0;

  // --- change log positions (change_log.cpp)
  virtual bool validPosition(const std::string& position) const = 0;
  virtual std::string currentPosition(Side& side) const = 0;
  /// The later of two positions read in order from the same log (`earlier` first).
  virtual std::string laterOf(const std::string& earlier, const std::string& now) const = 0;
  /// A condition on strangler_changes: the change is at or before `position`.
  virtual std::string atOrBefore(const std::string& position) const = 0;
  /// A condition: the change is not yet applied by `checkpoint`.
  virtual std::string notCovered(const Checkpoint& checkpoint) const = 0;
  /// A condition: the change is after `from` (a window's lower bound).
  virtual std::string after(const std::string& from) const = 0;
  /// A condition: the change may be deleted once applied through `position`, with live
  /// readers holding `floor` (readerBound() of the oldest).
  virtual std::string prunable(const std::string& position, std::optional<int64_t> floor) const = 0;
  /// What a reader registered at `position` holds back, comparable across readers.
  virtual int64_t readerBound(const std::string& position) const = 0;
  /// Extra condition when deleting change rows: rows that must stay (SQLite's newest, whose
  /// seq would be handed out again); empty when none.
  virtual std::string keepInLog() const = 0;
  /// A checkpoint written by a version that kept only a sequence number.
  virtual std::string positionFromSeq(Side& side, int64_t last_seq) const = 0;

  // --- keys (key_map.cpp, change_player.cpp)
  /// Whether the table's key column allocates by itself, and whether through a sequence the
  /// service's writes can share (PostgreSQL) rather than a rowid (SQLite).
  struct KeyDefault {
    bool allocates = false;
    bool sequence = false;
  };
  virtual KeyDefault keyDefault(Side& side) const = 0;
  /// Inserts a row letting the table allocate its key; returns the key.
  virtual int64_t insertAllocating(Side& side, const std::string& columns,
                                   const std::string& values) const = 0;
  /// Makes the table's generated keys continue above `floor`.
  virtual void setNextKey(Side& side, int64_t floor) const = 0;

  // --- bulk reads and writes (row_io.h)
  virtual std::unique_ptr<ChunkSource> chunkSource(Side& side, std::vector<Cls> classes,
                                                   std::size_t key_column, int64_t chunk) const = 0;
  /// `classes`: the written columns' classes, constants included.
  virtual std::unique_ptr<RowSink> rowSink(Side& side, std::vector<Cls> classes,
                                           const std::set<std::string>* updated) const = 0;
  /// After a bulk load into `side`.
  virtual void afterBulkLoad(Side& side) const = 0;

  // --- the single-writer lease (sync_lease.cpp)
  /// Makes two candidates reading the lease at once serialize (the row lock decides).
  virtual void lockLease(Side& side, const std::string& mapping) const = 0;

  /// Whether change capture can read the engine's log instead of triggers (logical_log.cpp).
  virtual bool hasLogicalDecoding() const = 0;
};

const Engine& sqliteEngine();
const Engine& postgresEngine();

inline const Engine& engineFor(common::DbBackend backend) {
  return backend == common::DbBackend::kSqlite3 ? sqliteEngine() : postgresEngine();
}

}  // namespace strangler::acl::sync::detail
