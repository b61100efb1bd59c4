// The initial copy of a mapping's rows, in chunks of one transaction each. Capture is on before
// the copy starts and the stream starts at the position taken then, so a row changed during the
// copy is applied again afterwards; killed anywhere, the copy resumes after its last chunk.
#include <chrono>
#include <limits>
#include <stdexcept>

#include "change_capture.h"
#include "change_log.h"
#include "sync_engine_impl.h"

namespace strangler::acl::sync {

using detail::Chunk;
using detail::Side;

void SyncEngine::Impl::snapshot(Direction d, detail::State& state, RunReport& report) {
  Side& source = sourceOf(d);
  Side& target = targetOf(d);
  if (state.phase == "new") {
    state.checkpoint = detail::Checkpoint{positionNow(source), std::nullopt, 0};
    state.last_key.reset();
    state.rows_copied = 0;
    state.phase = "snapshot";
    common::Transaction tx(*target.sql, target.backend(), common::Transaction::Mode::kWrite);
    writeState(target, d, state);
    tx.commit();
  }
  const std::string rest_where =
      source.whereConstants() + (state.last_key
                                     ? std::string(source.constants.empty() ? "" : " AND ") +
                                           source.key + " > " + std::to_string(*state.last_key)
                                     : "");
  const int64_t total =
      state.rows_copied + source.scalar("SELECT COUNT(*) FROM " + source.table +
                                        (rest_where.empty() ? "" : " WHERE " + rest_where));
  const auto started = std::chrono::steady_clock::now();
  int64_t copied_now = 0;
  auto reader = sourceFor(source);
  auto sink = sinkFor(target);
  const auto& fields = translator.fields();
  Chunk chunk;
  for (;;) {
    reader->next(state.last_key.value_or(std::numeric_limits<int64_t>::min()), chunk);
    const std::size_t n = chunk.rows();
    if (n == 0) break;
    const int64_t chunk_last = chunk.keys.back();
    if (state.last_key && chunk_last <= *state.last_key) {
      throw std::runtime_error("the " + source.name + " table's keys did not increase");
    }
    auto& columns = chunk.columns;
    const auto errors = translator.translateColumns(columns, d == Direction::kForward);
    // Keys the key map gives another value on the target (a copy made again after a flip).
    const auto twin = key_map->translate(chunk.keys, d == Direction::kForward);
    const auto unborn = retarget(d, chunk, twin);
    RowTranslator::Columns out(fields.size() + target.constants.size());
    for (auto& column : out)
      column.reserve(n);
    for (std::size_t r = 0; r < n; ++r) {
      if (errors[r] || unborn.count(r)) continue;
      for (std::size_t c = 0; c < fields.size(); ++c)
        out[c].push_back(std::move(columns[c][r]));
      std::size_t j = fields.size();
      for (const auto& [column, value] : target.constants)
        out[j++].push_back(value);
    }
    common::Transaction tx(*target.sql, target.backend(), common::Transaction::Mode::kWrite);
    detail::markApplying(target);
    // Rows the translator rejected are quarantined with their source values (read again:
    // the chunk's values were translated in place).
    std::vector<int64_t> rejected;
    for (std::size_t r = 0; r < n; ++r)
      if (errors[r]) rejected.push_back(chunk.keys[r]);
    std::map<int64_t, Row> originals;
    for (auto& [key, row] : source.readKeys(rejected))
      originals[key] = std::move(row);
    for (std::size_t r = 0; r < n; ++r) {
      if (!errors[r]) continue;
      deadLetter(target, d, chunk.keys[r], errors[r]->message(), originals[chunk.keys[r]]);
      ++report.dead_letters;
    }
    sink->write(out);
    for (auto r : unborn)
      if (!errors[r]) insertAllocated(chunk, r);
    state.last_key = chunk_last;
    state.rows_copied += static_cast<int64_t>(n);
    writeState(target, d, state);
    detail::unmarkApplying(target);
    tx.commit();
    copied_now += static_cast<int64_t>(n);
    report.snapshot_rows += static_cast<int64_t>(n);
    if (heartbeat) heartbeat();
    if (options.on_progress) {
      const double seconds =
          std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
      options.on_progress({state.rows_copied, total, seconds > 0 ? copied_now / seconds : 0});
    }
  }
  common::Transaction tx(*target.sql, target.backend(), common::Transaction::Mode::kWrite);
  state.phase = "stream";
  writeState(target, d, state);
  tx.commit();
  target.engine().afterBulkLoad(target);
}

}  // namespace strangler::acl::sync
