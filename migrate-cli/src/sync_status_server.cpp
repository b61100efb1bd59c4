#include "sync_status_server.h"

#include <Poco/Net/HTTPServer.h>
#include <Poco/Net/HTTPServerParams.h>
#include <Poco/Net/ServerSocket.h>
#include <Poco/Net/SocketAddress.h>

#include <ctime>

#include "strangler/common/json_api.h"

namespace strangler::cli {
namespace {

using nlohmann::json;
namespace sync = acl::sync;

constexpr auto kRateWindow = std::chrono::seconds(10);

std::string iso8601(std::chrono::system_clock::time_point when) {
  const auto ms =
      std::chrono::duration_cast<std::chrono::milliseconds>(when.time_since_epoch()).count();
  const std::time_t seconds = static_cast<std::time_t>(ms / 1000);
  std::tm tm{};
  gmtime_r(&seconds, &tm);
  char buffer[32];
  std::strftime(buffer, sizeof buffer, "%Y-%m-%dT%H:%M:%S", &tm);
  char millis[8];
  std::snprintf(millis, sizeof millis, ".%03dZ", static_cast<int>(ms % 1000));
  return std::string(buffer) + millis;
}

}  // namespace

SyncStatusServer::SyncStatusServer(std::string mapping, std::unique_ptr<sync::SyncEngine> reader)
    : mapping_(std::move(mapping)), reader_(std::move(reader)), last_verify_(nullptr) {}

common::Result<std::unique_ptr<SyncStatusServer>> SyncStatusServer::start(
    const common::HostPort& address, std::string mapping,
    std::unique_ptr<sync::SyncEngine> reader) {
  using R = common::Result<std::unique_ptr<SyncStatusServer>>;
  std::unique_ptr<SyncStatusServer> server(
      new SyncStatusServer(std::move(mapping), std::move(reader)));
  auto* self = server.get();
  std::vector<common::ApiRoute> routes = {
      {"GET", "/status",
       [self](const common::ApiCall&) {
         return common::ApiReply{200, self->report(), {{"Cache-Control", "no-store"}}};
       }},
      {"GET", "/positions", [self](const common::ApiCall&) { return self->positions(); }},
      {"GET", "/backlog",
       [self](const common::ApiCall& call) { return self->backlog(call.query); }}};
  try {
    Poco::Net::ServerSocket socket(Poco::Net::SocketAddress(address.host, address.port), 64);
    server->address_ = common::HostPort{address.host, socket.address().port()};
    auto* params = new Poco::Net::HTTPServerParams();
    params->setMaxThreads(2);
    params->setMaxQueued(64);
    params->setKeepAlive(true);
    server->server_ = std::make_unique<Poco::Net::HTTPServer>(
        new common::JsonApiHandlerFactory(std::move(routes), {}), socket, params);
    server->server_->start();
  } catch (const Poco::Exception& error) {
    return R::failure("listen_failed", "cannot serve the sync status on " + address.toString() +
                                           ": " + error.displayText());
  }
  return server;
}

SyncStatusServer::~SyncStatusServer() {
  if (server_) server_->stopAll(true);
}

std::string SyncStatusServer::url() const {
  return "http://" + address_.toString() + "/status";
}

void SyncStatusServer::onBatch(const sync::BatchApplied& batch) {
  const auto now = Clock::now();
  std::lock_guard lock(mutex_);
  recent_.emplace_back(now, batch.changes);
  while (!recent_.empty() && now - recent_.front().first > kRateWindow)
    recent_.pop_front();
  last_applied_at_ = now;
  // Capture times have one-second resolution: this is the lag's upper bound (at most 1 s over).
  const auto now_ms =
      std::chrono::duration_cast<std::chrono::milliseconds>(now.time_since_epoch()).count();
  last_lag_ms_ = std::max<int64_t>(0, now_ms - batch.newest_change_s * 1000);
}

void SyncStatusServer::onProgress(const sync::Progress& progress) {
  std::lock_guard lock(mutex_);
  snapshot_ = progress;
}

void SyncStatusServer::onVerify(const sync::VerifyReport& report, int64_t pending_before) {
  std::lock_guard lock(mutex_);
  last_verify_ = json{{"at", iso8601(Clock::now())},
                      {"identical", report.identical()},
                      {"source_rows", report.source_rows},
                      {"target_rows", report.target_rows},
                      {"differing_ranges", report.differing_ranges},
                      {"pending_changes", pending_before}};
}

void SyncStatusServer::markStopping() {
  std::lock_guard lock(mutex_);
  stopping_ = true;
}

common::ApiReply SyncStatusServer::positions() {
  std::lock_guard lock(reader_mutex_);
  auto positions = reader_->positions();
  if (!positions.ok())
    return common::errorReply(503, positions.error().code, positions.error().message);
  return common::ApiReply{
      200,
      {{"mapping", mapping_}, {"monolith", positions->monolith}, {"service", positions->service}},
      {{"Cache-Control", "no-store"}}};
}

common::ApiReply SyncStatusServer::backlog(const std::map<std::string, std::string>& query) {
  const auto monolith = query.find("monolith");
  const auto service = query.find("service");
  if (monolith == query.end() || service == query.end())
    return common::errorReply(400, "usage",
                              "give the fence as ?monolith=POSITION&service=POSITION");
  std::lock_guard lock(reader_mutex_);
  auto backlog = reader_->backlog(sync::Positions{monolith->second, service->second});
  if (!backlog.ok()) return common::errorReply(400, backlog.error().code, backlog.error().message);
  return common::ApiReply{200,
                          {{"mapping", mapping_},
                           {"forward", backlog->forward},
                           {"reverse", backlog->reverse},
                           {"caught_up", backlog->empty()}},
                          {{"Cache-Control", "no-store"}}};
}

json SyncStatusServer::report() {
  const auto now = Clock::now();
  // The database first, under the reader's own lock: the applying thread reports its batches
  // under mutex_ and must never wait on a query.
  common::Result<sync::StatusReport> status = [&] {
    std::lock_guard reading(reader_mutex_);
    return reader_->status();
  }();
  std::lock_guard lock(mutex_);
  json out{{"mapping", mapping_}};
  if (status.ok()) {
    out["state"] = stopping_ ? "stopping" : status->phase == "stream" ? "streaming" : "snapshot";
    out["direction"] = sync::toString(status->direction);
    out["phase"] = status->phase;
    out["owner"] = status->direction == sync::Direction::kForward ? "monolith" : "service";
    out["position"] = status->position;
    out["reverse_position"] = status->reverse_position;
    out["rows_copied"] = status->rows_copied;
    out["changes_applied"] = status->changes_applied;
    out["reverse_applied"] = status->reverse_applied;
    out["pending_changes"] = status->pending_changes;
    out["reverse_pending"] = status->reverse_pending;
    out["oldest_pending_age_s"] =
        status->oldest_pending_age_s ? json(*status->oldest_pending_age_s) : json(nullptr);
    out["dead_letters"] = status->dead_letters;
  } else {
    // Before the first run installs the sync tables there is nothing to read yet.
    out["state"] = stopping_ ? "stopping" : "starting";
    out["error"] = status.error().message;
  }
  while (!recent_.empty() && now - recent_.front().first > kRateWindow)
    recent_.pop_front();
  int64_t applied = 0;
  for (const auto& [when, count] : recent_)
    applied += count;
  const bool snapshotting = snapshot_ && out["state"] == "snapshot";
  out["rows_per_second"] = snapshotting ? snapshot_->rows_per_second
                                        : static_cast<double>(applied) /
                                              std::chrono::duration<double>(kRateWindow).count();
  if (snapshotting) {
    out["snapshot"] = {{"rows_done", snapshot_->rows_done},
                       {"rows_total", snapshot_->rows_total},
                       {"rows_per_second", snapshot_->rows_per_second}};
  }
  out["lag_ms"] = last_lag_ms_ ? json(*last_lag_ms_) : json(nullptr);
  out["last_applied_at"] = last_applied_at_ ? json(iso8601(*last_applied_at_)) : json(nullptr);
  out["last_verify"] = last_verify_;
  out["updated_at"] = iso8601(now);
  return out;
}

}  // namespace strangler::cli
