#pragma once

#include <nlohmann/json.hpp>

#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "strangler/common/result.h"
#include "strangler/proxy/config_file.h"

namespace strangler::cli {

// The file editing itself lives with the proxy's config (the proxy journals its own
// auto-rollbacks through it); the CLI uses it under these names.
using proxy::ConfigStore;
using proxy::JournalEntry;
using proxy::nowIso8601;
using proxy::stageOf;
using proxy::whoAmI;

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

/// What an edit attempt returns when its commit lost a compare-and-swap race (etcd): another
/// edit was written since the config was read, so the attempt must read and edit again.
constexpr int kRetryEdit = -1;
/// Runs `attempt` (open the store, edit, commit) until it returns something else than
/// kRetryEdit, at most 20 times with short random pauses; returns its exit code.
int retryEdits(const std::function<int()>& attempt);

/// Sends `method` {admin}{path} with a JSON `body` and the bearer token from the env var the
/// config names; returns the parsed JSON answer, or an error (a non-200 answer is "refused").
common::Result<nlohmann::json> callAdmin(const std::string& admin_url, const std::string& method,
                                         const std::string& path,
                                         const nlohmann::ordered_json& config,
                                         const std::string& body = "");

/// GETs {admin}{path} (e.g. "/routes") and parses the JSON answer.
common::Result<nlohmann::json> fetchAdmin(const std::string& admin_url, const std::string& path);

}  // namespace strangler::cli
