#pragma once

#include <nlohmann/json.hpp>

#include <string>
#include <vector>

#include "strangler/common/result.h"

// The config file as tools edit it (the CLI's route verbs, the proxy's own auto-rollback):
// locked, validated with the proxy's validator, written atomically, journaled.
namespace strangler::proxy {

/// One line of the migration journal (<config>.journal.jsonl).
struct JournalEntry {
  std::string time;  ///< ISO 8601, UTC
  std::string route;
  std::string action;  ///< "add", "shadow", "canary", "extract", "advance", "reset", "rollback"
  nlohmann::ordered_json from;  ///< {"stage", "percent"} before (null for "add")
  nlohmann::ordered_json to;    ///< {"stage", "percent"} after
  std::string who;
  nlohmann::ordered_json extra = nlohmann::ordered_json::object();  ///< e.g. reason, data, forced
};

/// The proxy config file as the CLI edits it: under an exclusive lock, every edit validated with
/// the proxy's own validator before and after, written atomically (temp file, fsync, rename),
/// key order kept, and journaled.
class ConfigStore {
 public:
  /// Locks `path` (waiting for other strangler runs) and reads it; fails when it is unreadable,
  /// not JSON, or not a valid proxy config.
  static common::Result<ConfigStore> open(const std::string& path);
  ConfigStore(ConfigStore&& other) noexcept;
  ConfigStore& operator=(ConfigStore&&) = delete;
  ~ConfigStore();

  nlohmann::ordered_json& json() { return json_; }
  /// The route object named `name`, or nullptr.
  nlohmann::ordered_json* route(const std::string& name);

  /// Validates the edited document and, when valid, replaces the file and appends `entry` to the
  /// journal. On failure nothing is written and the error lists every violation.
  common::Result<void> commit(const JournalEntry& entry);

  /// The journal's entries, oldest first (unreadable lines are skipped).
  std::vector<JournalEntry> journal() const;
  const std::string& path() const { return path_; }

 private:
  ConfigStore() = default;
  std::string path_;
  int lock_fd_ = -1;
  nlohmann::ordered_json json_;
};

/// {"stage": ..., "percent": ...} of a route object (percent only in canary).
nlohmann::ordered_json stageOf(const nlohmann::ordered_json& route);
/// Now, as ISO 8601 UTC.
std::string nowIso8601();
/// Who runs this: $STRANGLER_USER, $USER, or the login name.
std::string whoAmI();

}  // namespace strangler::proxy
