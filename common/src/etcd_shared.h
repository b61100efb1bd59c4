#pragma once
// What the copies of one EtcdClient share (connections, members, token), and the JSON helpers
// the client and its watch use. Internal to strangler_etcd.

#include <Poco/Net/Context.h>
#include <Poco/Net/HTTPClientSession.h>

#include <chrono>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "strangler/common/etcd_client.h"

namespace strangler::common::etcd_detail {

std::string base64(const std::string& text);
std::string unbase64(const std::string& text);
/// The gateway writes 64-bit integers as strings and leaves out fields that are zero.
int64_t number(const nlohmann::json& object, const char* name);
EtcdKeyValue keyValue(const nlohmann::json& kv);
/// The message of an error answer ({"error": ..., "message": ...} or {"error": {"message"...}}),
/// else the start of the body.
std::string errorMessage(const std::string& body);
/// An error etcd gives for a request it did not propose (so nothing was applied).
bool notProposed(const std::string& message);
/// An error that says the auth token is missing, unknown or expired.
bool tokenRejected(const std::string& message);

/// One request and what came of it.
struct Exchange {
  enum class How {
    kAnswered,  ///< a complete answer (any status)
    kNotSent,   ///< the request never left: no connection
    kLost,      ///< it went out but no answer came back: it may have been applied
  } how = How::kNotSent;
  int status = 0;
  std::string body;
  std::string error;
};

}  // namespace strangler::common::etcd_detail

namespace strangler::common {

struct EtcdClient::Shared {
  explicit Shared(std::vector<HostPort> seeds, EtcdSecurity security);

  /// The members, the one that answered last first.
  std::vector<HostPort> ordered() const;
  void prefer(const HostPort& member);
  /// A session to `member`: an idle one when its connection is still good, else a new one.
  std::unique_ptr<Poco::Net::HTTPClientSession> take(const HostPort& member);
  /// A new session (not from the pool): plain or TLS as configured.
  std::unique_ptr<Poco::Net::HTTPClientSession> open(const HostPort& member) const;
  void giveBack(const HostPort& member, std::unique_ptr<Poco::Net::HTTPClientSession> session);
  /// Sends one POST through a pooled session.
  etcd_detail::Exchange exchange(const HostPort& member, const std::string& path,
                                 const std::string& body, std::chrono::milliseconds timeout);
  /// With a user configured and no token yet, authenticates on `member`.
  Result<void> ensureToken(const HostPort& member, std::chrono::milliseconds timeout);
  std::string token() const;
  /// Forgets `used` (when still the current token) so the next call authenticates again.
  void dropToken(const std::string& used);
  /// Replaces the members learnt from the cluster (the configured ones always stay).
  void setListed(const std::vector<HostPort>& listed);
  /// True (once per period) when the member list is due to be read again.
  bool membersDue();
  /// Notes that a request to `member` went unanswered (no connection, a timeout, no leader).
  void markFailed(const HostPort& member);
  /// True when a request to `member` went unanswered after `since`: a watch on it may be
  /// silently stale (a stopped process keeps its connections open).
  bool failedSince(const HostPort& member, std::chrono::steady_clock::time_point since) const;
  Poco::Net::Context::Ptr context() const { return context_; }

  const EtcdSecurity security;
  bool learn_members = true;
  std::string setup_error;  ///< the TLS context could not be built: every call fails with it

 private:
  Poco::Net::Context::Ptr context_;
  const std::vector<HostPort> seeds_;
  mutable std::mutex mutex_;
  std::vector<HostPort> members_;
  std::string preferred_;
  std::map<std::string, std::vector<std::unique_ptr<Poco::Net::HTTPClientSession>>> idle_;
  std::string token_;
  std::chrono::steady_clock::time_point members_checked_{};
  std::map<std::string, std::chrono::steady_clock::time_point> failed_at_;
};

}  // namespace strangler::common
