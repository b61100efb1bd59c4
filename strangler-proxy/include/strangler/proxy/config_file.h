#pragma once

#include <nlohmann/json.hpp>

#include <memory>
#include <string>
#include <vector>

#include "strangler/common/result.h"

// The config as tools edit it (the CLI's route verbs, the proxy's own auto-rollback): locked
// (file) or compare-and-swap (etcd), validated with the proxy's validator, written atomically,
// journaled.
namespace strangler::proxy {

/// One line of the migration journal (<config>.journal.jsonl, or PREFIX/journal/ in etcd).
struct JournalEntry {
  std::string time;  ///< ISO 8601, UTC
  std::string route;
  std::string action;  ///< "add", "shadow", "canary", "extract", "advance", "reset", "rollback",
                       ///< "push"
  nlohmann::ordered_json from;  ///< {"stage", "percent"} before (null for "add")
  nlohmann::ordered_json to;    ///< {"stage", "percent"} after
  std::string who;
  nlohmann::ordered_json extra = nlohmann::ordered_json::object();  ///< e.g. reason, data, forced
};

/// The proxy config as the CLI edits it, in a file or in etcd. Every edit is validated with the
/// proxy's own validator before and after, and journaled with the config in one step.
/// - A file: under an exclusive lock (`<config>.lock`), written atomically (temp file, fsync,
///   rename), key order kept; the journal is `<config>.journal.jsonl`.
/// - etcd (`etcd://HOST:PORT[,HOST:PORT...]/PREFIX`): the document at `PREFIX/config` is written
///   in a transaction that compares its mod_revision with the one read (compare-and-swap) and
///   adds the journal line at `PREFIX/journal/<12-digit sequence>`; when another writer got
///   there first, commit() fails with code "conflict" and nothing is written (re-open, redo the
///   edit, commit again).
class ConfigStore {
 public:
  /// kEdit: the current document must exist and be valid. kReplace: it may be missing or
  /// invalid (`strangler config push` replaces it whole).
  enum class Mode { kEdit, kReplace };

  /// Opens the config at `location` (a file path or an etcd URL) and reads it; a file is locked
  /// (waiting for other strangler runs) until the store is destroyed.
  static common::Result<ConfigStore> open(const std::string& location, Mode mode = Mode::kEdit);
  ConfigStore(ConfigStore&& other) noexcept;
  ConfigStore& operator=(ConfigStore&&) = delete;
  ~ConfigStore();

  nlohmann::ordered_json& json() { return json_; }
  /// The route object named `name`, or nullptr.
  nlohmann::ordered_json* route(const std::string& name);

  /// Validates the edited document and, when valid, replaces the stored one and appends `entry`
  /// to the journal. On failure nothing is written and the error lists every violation (code
  /// "refused"), or says that another writer changed the config since open() (code "conflict").
  common::Result<void> commit(const JournalEntry& entry);
  /// etcd only: commit() also requires `key` to hold `value` (a decider's fence: a replica that
  /// lost the role cannot apply its decision); when it does not, commit() fails with "conflict".
  void requireKey(std::string key, std::string value);

  /// The journal's entries, oldest first (unreadable lines are skipped).
  std::vector<JournalEntry> journal() const;
  const std::string& path() const { return path_; }

  /// Where a store reads and writes: a locked file, or etcd.
  class Backend;

 private:
  ConfigStore();
  std::string path_;
  std::unique_ptr<Backend> backend_;
  nlohmann::ordered_json json_;
};

/// {"stage": ..., "percent": ...} of a route object (percent only in canary).
nlohmann::ordered_json stageOf(const nlohmann::ordered_json& route);
/// Now, as ISO 8601 UTC.
std::string nowIso8601();
/// Who runs this: $STRANGLER_USER, $USER, or the login name.
std::string whoAmI();

}  // namespace strangler::proxy
