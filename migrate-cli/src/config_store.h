#pragma once

#include <nlohmann/json.hpp>

#include <optional>
#include <string>
#include <vector>

#include "strangler/common/result.h"

namespace strangler::cli {

/// One line of the migration journal (<config>.journal.jsonl).
struct JournalEntry {
  std::string time;  ///< ISO 8601, UTC
  std::string route;
  std::string action;           ///< "add", "shadow", "canary", "extract", "reset", "rollback"
  nlohmann::ordered_json from;  ///< {"stage", "percent"} before (null for "add")
  nlohmann::ordered_json to;    ///< {"stage", "percent"} after
  std::string who;
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

/// POSTs {admin}/reload with the bearer token from the env var the config names; returns the
/// proxy's answer, or an error naming what failed.
common::Result<std::string> reloadProxy(const std::string& admin_url,
                                        const nlohmann::ordered_json& config);
/// Commits the edit (ConfigStore::commit) and, when `admin_url` is set, reloads the proxy.
/// Returns the proxy's answer (nullopt without `admin_url`); a failed reload is an error with
/// code "reload_failed" (the config was written all the same).
common::Result<std::optional<std::string>> commitAndReload(ConfigStore& store,
                                                           const JournalEntry& entry,
                                                           const std::string& admin_url);

/// GETs {admin}{path} (e.g. "/routes") and parses the JSON answer.
common::Result<nlohmann::json> fetchAdmin(const std::string& admin_url, const std::string& path);

}  // namespace strangler::cli
