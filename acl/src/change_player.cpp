// Applying the change logs, both ways, all the time: monolith → service (forward) and
// service → monolith (reverse). A batch applies the current state of each changed key (not the
// change's payload), only the columns its changes touched, so applying twice is harmless and
// two sides changing different columns of a row both keep their write. When both changed the
// same column at once, the owner's value wins: the stream into the owner skips that column, and
// the owner's own pending change carries its value the other way.
#include <algorithm>
#include <chrono>
#include <limits>
#include <map>
#include <set>

#include "change_capture.h"
#include "change_log.h"
#include "logical_log.h"
#include "sync_engine_impl.h"

namespace strangler::acl::sync {

using detail::Checkpoint;
using detail::Chunk;
using detail::Delta;
using detail::keyList;
using detail::Side;
using detail::Stream;

namespace {

Direction other(Direction d) {
  return d == Direction::kForward ? Direction::kReverse : Direction::kForward;
}

/// Field indexes of a side's column names.
std::set<std::size_t> fieldsNamed(const Side& side, const std::vector<std::string>& names) {
  std::set<std::size_t> fields;
  for (const auto& name : names)
    for (std::size_t i = 0; i < side.columns.size(); ++i)
      if (side.columns[i] == name) fields.insert(i);
  return fields;
}

void merge(Delta& into, const Delta& change) {
  if (!into || !change) {
    into.reset();
    return;
  }
  into->insert(change->begin(), change->end());
}

}  // namespace

void SyncEngine::Impl::startReverseStream() {
  detail::State state = readState(monolith, Direction::kReverse);
  if (state.phase == "stream") return;
  // Capture on the service starts only now: during the forward snapshot the service takes no
  // writes of its own, and a trigger per copied row would slow the copy down.
  detail::installCapture(service, translator.name());
  // Ids the service allocates must not meet the monolith's (they share the legacy table).
  const int64_t floor =
      std::max(detail::kServiceIdFloor,
               service.scalar("SELECT MAX(" + service.key + ") FROM " + service.table));
  {
    common::Transaction tx(*service.sql, service.backend(), common::Transaction::Mode::kWrite);
    service.engine().setNextKey(service, floor);
    tx.commit();
  }
  state = detail::State{};
  state.phase = "stream";
  state.checkpoint.position = detail::currentPosition(service);
  common::Transaction tx(*monolith.sql, monolith.backend(), common::Transaction::Mode::kWrite);
  writeState(monolith, Direction::kReverse, state);
  tx.commit();
}

int64_t SyncEngine::Impl::applyNext(Direction d, RunReport& report) {
  Stream& s = streamOf(d);
  Side& source = sourceOf(d);
  if (!s.ready) {
    s.state = readState(targetOf(d), d);
    s.cursor = s.state.checkpoint;
    s.reader = sourceFor(source);
    s.sinks.clear();
    s.ready = true;
  }
  Checkpoint& cursor = s.cursor;
  if (source.logical) {
    // Every read of a slot decodes again from its restart point (which moves only when
    // PostgreSQL logs its running transactions, every 15 s or so): behind, a few large reads
    // cost far less than many small ones, so each read cut short by its limit doubles the next
    // one's (up to kLogicalReadFactor batches, applied in one transaction); caught up, reads
    // are one batch (the lag stays short) and runOnce() waits a moment between them.
    auto batch = detail::readLogical(source, cursor.position, options.change_batch * s.read_factor);
    s.caught_up = batch.complete;
    s.read_factor = batch.complete ? 1 : std::min(s.read_factor * 2, detail::kLogicalReadFactor);
    if (batch.rows.empty()) {
      if (batch.next_position != cursor.position) {
        // Nothing of the mapping's: the slot moves on all the same, so PostgreSQL keeps no
        // WAL for us (the committed checkpoint stays where the last applied change was).
        cursor.position = batch.next_position;
        detail::confirmLogical(source, cursor.position);
      }
      return 0;
    }
    applyRows(s, batch.rows, Checkpoint{batch.next_position, std::nullopt, 0}, report);
    detail::confirmLogical(source, s.cursor.position);
    return static_cast<int64_t>(batch.rows.size());
  }
  Checkpoint next = cursor;
  if (!next.window_to) {
    auto to = detail::currentPosition(source);
    if (to == next.position) return 0;
    next.window_to = to;
    next.window_seq = 0;
  }
  const auto rows = detail::readWindow(source, next.position, *next.window_to, next.window_seq,
                                       options.change_batch);
  if (static_cast<int64_t>(rows.size()) < options.change_batch) {
    next.position = *next.window_to;
    next.window_to.reset();
    next.window_seq = 0;
  } else {
    next.window_seq = rows.back().seq;
  }
  if (rows.empty()) {
    cursor = next;  // a window without changes: nothing to record
    return 0;
  }
  applyRows(s, rows, next, report);
  return static_cast<int64_t>(rows.size());
}

void SyncEngine::Impl::applyRows(Stream& s, const std::vector<detail::ChangeRow>& rows,
                                 const Checkpoint& next, RunReport& report) {
  const Direction d = s.direction;
  Side& source = sourceOf(d);
  Side& target = targetOf(d);
  std::vector<int64_t> keys;
  std::map<int64_t, Delta> deltas;
  int64_t newest_change_s = 0;
  for (const auto& row : rows) {
    newest_change_s = std::max(newest_change_s, row.changed_at);
    Delta change;
    if (row.cols) change = fieldsNamed(source, detail::parseChangedColumns(*row.cols));
    auto [it, inserted] = deltas.emplace(row.pk, change);
    if (inserted) {
      keys.push_back(row.pk);
    } else {
      merge(it->second, change);
    }
  }
  const bool into_owner = direction() == other(d);  // this stream writes into the owner's side

  // The rows' keys on the target side (key_map.h): where they differ, and the service's new
  // rows that have no key in the monolith yet.
  const auto twin = key_map->translate(keys, d == Direction::kForward);
  const auto target_key = [&](int64_t k) {
    auto it = twin.find(k);
    return it == twin.end() ? k : it->second;
  };
  std::vector<int64_t> target_keys;
  std::map<int64_t, int64_t> source_key;  // target key → source key
  std::set<int64_t> unborn_keys;          // no row in the monolith yet
  for (auto k : keys) {
    if (d == Direction::kReverse && key_map->needsAllocation(k, twin)) {
      unborn_keys.insert(k);
      continue;
    }
    target_keys.push_back(target_key(k));
    source_key[target_key(k)] = k;
  }

  common::Transaction tx(*target.sql, target.backend(), common::Transaction::Mode::kWrite);
  detail::markApplying(target);
  if (into_owner && !target_keys.empty()) {
    // Lock the owner's rows first, so an owner write either committed before (and is seen
    // below as pending) or waits for this batch (and is captured after it).
    target.engine().lockRows(target, keyList(target_keys));
    // The owner's changes that its own stream has not carried over yet: its committed
    // checkpoint lives in this stream's source database.
    const Checkpoint owner_cp = readState(source, other(d)).checkpoint;
    std::map<int64_t, Delta> pending;
    const auto note = [&](int64_t target_pk, const std::optional<std::string>& cols) {
      const auto mine = source_key.find(target_pk);
      if (mine == source_key.end()) return;
      Delta owner_change;
      if (cols) owner_change = fieldsNamed(target, detail::parseChangedColumns(*cols));
      auto [it, inserted] = pending.emplace(mine->second, owner_change);
      if (!inserted) merge(it->second, owner_change);
    };
    if (target.logical) {
      for (const auto& change :
           detail::readLogical(target, owner_cp.position, std::numeric_limits<int>::max()).rows)
        note(change.pk, change.cols);
    } else {
      long long pk = 0;
      std::string cols;
      soci::indicator cols_ind = soci::i_null;
      soci::statement st =
          (target.sql->prepare << "SELECT pk, cols FROM strangler_changes WHERE table_name = :t"
                                  " AND origin = 'app' AND pk IN (" +
                                      keyList(target_keys) + ") AND " +
                                      detail::notCovered(target, owner_cp),
           soci::use(target.table), soci::into(pk), soci::into(cols, cols_ind));
      st.execute();
      while (st.fetch())
        note(pk, cols_ind == soci::i_ok ? std::optional<std::string>(cols) : std::nullopt);
    }
    for (const auto& [key, owner_change] : pending) {
      Delta& mine = deltas[key];
      if (!owner_change || !mine) {
        report.conflicts += static_cast<int64_t>(mine ? mine->size() : source.columns.size());
        mine = std::set<std::size_t>{};
        continue;
      }
      for (auto field : *owner_change)
        report.conflicts += static_cast<int64_t>(mine->erase(field));
    }
    keys.erase(std::remove_if(keys.begin(), keys.end(),
                              [&](int64_t k) { return deltas[k] && deltas[k]->empty(); }),
               keys.end());
  }

  // The source's current rows, read after the lock and the check above.
  Chunk chunk;
  s.reader->byKeys(keys, chunk);
  const std::set<int64_t> present(chunk.keys.begin(), chunk.keys.end());
  const auto& fields = translator.fields();
  const auto errors = translator.translateColumns(chunk.columns, d == Direction::kForward);
  const auto unborn = retarget(d, chunk, twin);

  // Rows grouped by the columns they update (every column for a whole-row change).
  std::map<std::string, std::vector<std::size_t>> groups;
  std::map<std::string, std::set<std::string>> group_columns;
  std::vector<int64_t> rejected;
  for (std::size_t r = 0; r < chunk.rows(); ++r) {
    if (errors[r]) {
      rejected.push_back(chunk.keys[r]);
      continue;
    }
    if (unborn.count(r)) continue;
    const Delta& delta = deltas[chunk.keys[r]];
    std::string name = "*";
    if (delta) {
      name.clear();
      std::set<std::string> columns;
      for (auto field : *delta) {
        name += std::to_string(field) + ",";
        columns.insert(target.columns[field]);
      }
      group_columns.emplace(name, std::move(columns));
    }
    groups[name].push_back(r);
  }
  if (!rejected.empty()) {
    // Quarantined with their source values (read again: translation was in place).
    std::map<int64_t, Row> originals;
    for (auto& [key, row] : source.readKeys(rejected))
      originals[key] = std::move(row);
    for (std::size_t r = 0; r < chunk.rows(); ++r) {
      if (!errors[r]) continue;
      deadLetter(target, d, chunk.keys[r], errors[r]->message(), originals[chunk.keys[r]]);
      ++report.dead_letters;
    }
  }
  for (auto& [name, members] : groups) {
    auto& sink = s.sinks[name];
    if (!sink) sink = sinkFor(target, name == "*" ? nullptr : &group_columns[name]);
    RowTranslator::Columns out(fields.size() + target.constants.size());
    for (auto r : members) {
      for (std::size_t c = 0; c < fields.size(); ++c)
        out[c].push_back(std::move(chunk.columns[c][r]));
      std::size_t j = fields.size();
      for (const auto& [column, value] : target.constants)
        out[j++].push_back(value);
    }
    sink->write(out);
  }
  for (auto r : unborn)
    if (!errors[r]) insertAllocated(chunk, r);
  // A key that now translates, or is gone, is no longer a dead letter.
  const bool any_dead =
      target.scalar("SELECT COUNT(*) FROM strangler_dead_letters WHERE mapping = '" +
                    translator.name() + "' AND direction = '" + toString(d) + "'") > 0;
  const std::set<int64_t> still_rejected(rejected.begin(), rejected.end());
  std::vector<int64_t> unmapped;  // monolith keys of deleted pairs, forgotten after the commit
  for (auto key : keys) {
    if (any_dead && !still_rejected.count(key)) clearDeadLetter(target, d, key);
    if (present.count(key)) continue;
    if (unborn_keys.count(key)) continue;  // never there
    if (twin.count(key)) {
      if (d == Direction::kReverse) {
        key_map->forget(key, false);
      } else {
        unmapped.push_back(key);
      }
    }
    long long k = target_key(key);
    std::string del = "DELETE FROM " + target.table + " WHERE " + target.key + " = :k";
    if (!target.constants.empty()) del += " AND " + target.whereConstants();
    *target.sql << del, soci::use(k);
  }
  detail::State state = s.state;
  state.checkpoint = next;
  state.changes_applied += static_cast<int64_t>(keys.size());
  writeState(target, d, state);
  detail::unmarkApplying(target);
  tx.commit();
  // Killed before this, a pair outlives its deleted row: harmless unless the monolith gives the
  // same key to a new row, which an allocator taking the largest key plus one does only for the
  // largest key.
  for (auto key : unmapped)
    key_map->forget(key, true);
  s.state = state;
  s.cursor = next;
  (d == Direction::kForward ? report.changes_applied : report.reverse_applied) +=
      static_cast<int64_t>(keys.size());
  if (options.on_batch)
    options.on_batch({d, static_cast<int64_t>(keys.size()), next.position, newest_change_s});
}

std::set<std::size_t> SyncEngine::Impl::retarget(Direction d, Chunk& chunk,
                                                 const std::map<int64_t, int64_t>& twin) {
  std::set<std::size_t> unborn;
  if (key_map->mode() == detail::KeyMode::kShared) return unborn;
  const std::size_t k = keyIndex(targetOf(d));
  for (std::size_t r = 0; r < chunk.rows(); ++r) {
    const int64_t key = chunk.keys[r];
    if (d == Direction::kReverse && key_map->needsAllocation(key, twin)) {
      unborn.insert(r);
      continue;
    }
    if (auto it = twin.find(key); it != twin.end()) chunk.columns[k][r] = Value(it->second);
  }
  return unborn;
}

void SyncEngine::Impl::insertAllocated(Chunk& chunk, std::size_t r) {
  Row row;
  for (std::size_t c = 0; c < monolith.columns.size(); ++c)
    row[monolith.columns[c]] = chunk.columns[c][r];
  for (const auto& [column, value] : monolith.constants)
    row[column] = value;
  key_map->insertAllocated(chunk.keys[r], row);
}

void SyncEngine::Impl::pruneApplied() {
  for (Direction d : {Direction::kForward, Direction::kReverse}) {
    Stream& s = streamOf(d);
    if (!s.ready || s.state.checkpoint.position.empty() || sourceOf(d).logical) continue;
    detail::pruneChanges(sourceOf(d), s.state.checkpoint.position);
  }
}

}  // namespace strangler::acl::sync
