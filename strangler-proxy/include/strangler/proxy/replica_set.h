#pragma once

#include <atomic>
#include <chrono>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "strangler/common/etcd_client.h"
#include "strangler/common/result.h"

namespace strangler::proxy {

/// What one other replica answered to GET /figures.
struct ReplicaAnswer {
  std::string id;
  std::string admin;  ///< HOST:PORT of its admin API
  bool answered = false;
  std::string error;       ///< why not, when it did not
  nlohmann::json figures;  ///< its /figures document
  std::string updated_at;  ///< when it last wrote its registry entry (ISO 8601)
};

/// The replicas that share one etcd config (etcd://.../PREFIX), seen from one of them:
/// - this replica's registration, PREFIX/replicas/<id>, under a lease kept alive;
/// - the others as the registry lists them, followed through a watch (never polled);
/// - the one decider among them: PREFIX/decider holds its id under its lease. Every replica
///   watches that key and, when it is absent (no decider yet, or the last one's lease ended),
///   tries to create it (a create-if-absent transaction: one wins). A decision carries the key's
///   value as a compare (see fence()), so a replica that lost the role can never apply one;
/// - the figures of every other live replica, fetched from their admin APIs on demand.
class ReplicaSet {
 public:
  using Document = std::function<std::string()>;

  /// Registers `id` with `document()` and starts following the registry and the decider key.
  static common::Result<std::unique_ptr<ReplicaSet>> start(common::EtcdLocation location,
                                                           std::string id, Document document);
  ~ReplicaSet();
  ReplicaSet(const ReplicaSet&) = delete;
  ReplicaSet& operator=(const ReplicaSet&) = delete;
  /// Stops following, gives up the decider role and deregisters (revokes the lease).
  void stop();

  const std::string& id() const { return id_; }
  /// Puts this replica's document again (after it applied a config).
  void update();
  /// Every registered replica's document (this one included), by key order.
  std::vector<nlohmann::json> documents() const;
  /// True while this replica holds the decider key under its current lease.
  bool isDecider() const;
  /// The decider's id (empty when there is none right now).
  std::string decider() const;
  /// The key and value a decision's transaction must still find: PREFIX/decider = this id.
  std::pair<std::string, std::string> fence() const;
  /// GET /figures of every other registered replica, in parallel, each bounded by `timeout`.
  std::vector<ReplicaAnswer> fetchOthers(std::chrono::milliseconds timeout) const;

 private:
  ReplicaSet(common::EtcdLocation location, std::string id, Document document);
  void onDecider(const common::EtcdRange& range);
  void campaign();

  const common::EtcdLocation location_;
  const std::string id_;
  Document document_;
  common::EtcdClient client_;
  std::unique_ptr<common::EtcdLeaseKeeper> keeper_;
  std::unique_ptr<common::EtcdFollower> registry_;
  std::unique_ptr<common::EtcdFollower> decider_follower_;

  mutable std::mutex mutex_;
  std::vector<nlohmann::json> documents_;
  std::string decider_;
  int64_t decider_lease_ = 0;
};

}  // namespace strangler::proxy
