#pragma once

#include <chrono>
#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <utility>

#include "strangler/acl/sync_engine.h"
#include "strangler/common/host_port.h"
#include "strangler/common/json_api.h"
#include "strangler/common/result.h"

namespace Poco::Net {
class HTTPServer;
}

namespace strangler::cli {

/// The live figures of a running `sync watch`, served as JSON on `GET /status` (the proxy's
/// dashboard shows them). The applying thread reports batches and snapshot progress; checkpoint,
/// pending changes and dead letters are read on each request through a second engine, with its
/// own database sessions, so a status request never touches the applying engine.
/// `/positions` and `/backlog` let a proxy wait until the sync has caught up with a moment (the
/// shadow stage re-checks a mismatch that way, to tell sync lag from a real difference).
class SyncStatusServer {
 public:
  /// Serves on `address` (port 0: a free port). `reader` answers the database-side figures.
  static common::Result<std::unique_ptr<SyncStatusServer>> start(
      const common::HostPort& address, std::string mapping,
      std::unique_ptr<acl::sync::SyncEngine> reader);
  ~SyncStatusServer();
  SyncStatusServer(const SyncStatusServer&) = delete;
  SyncStatusServer& operator=(const SyncStatusServer&) = delete;

  /// The URL of the status document, with the port actually bound.
  std::string url() const;
  /// Records a committed batch of changes (called on the applying thread).
  void onBatch(const acl::sync::BatchApplied& batch);
  /// Records snapshot progress (called on the applying thread).
  void onProgress(const acl::sync::Progress& progress);
  /// Records the outcome of a verify run.
  void onVerify(const acl::sync::VerifyReport& report, int64_t pending_before);
  /// Marks the watch as stopping (served until the server is destroyed).
  void markStopping();
  /// The status document.
  nlohmann::json report();
  /// The end of both change logs now (GET /positions): a fence to wait for.
  common::ApiReply positions();
  /// What the sync has still to apply up to a fence (GET /backlog?monolith=P&service=Q).
  common::ApiReply backlog(const std::map<std::string, std::string>& query);

 private:
  SyncStatusServer(std::string mapping, std::unique_ptr<acl::sync::SyncEngine> reader);

  using Clock = std::chrono::system_clock;
  std::string mapping_;
  common::HostPort address_;
  std::mutex reader_mutex_;  // guards the reader's database sessions (never held with mutex_)
  std::unique_ptr<acl::sync::SyncEngine> reader_;
  std::mutex mutex_;  // guards the figures below (the applying thread reports under it)
  std::deque<std::pair<Clock::time_point, int64_t>> recent_;  // applied batches, last 10 s
  std::optional<int64_t> last_lag_ms_;
  std::optional<Clock::time_point> last_applied_at_;
  std::optional<acl::sync::Progress> snapshot_;
  nlohmann::json last_verify_;
  bool stopping_ = false;
  std::unique_ptr<Poco::Net::HTTPServer> server_;
};

}  // namespace strangler::cli
