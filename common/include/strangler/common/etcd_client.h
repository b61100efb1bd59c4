#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "strangler/common/host_port.h"
#include "strangler/common/result.h"

namespace strangler::common {

/// "etcd://HOST:PORT[,HOST:PORT...]/PREFIX": the members to try, in order, and a key prefix
/// (no trailing '/', may be empty).
struct EtcdLocation {
  std::vector<HostPort> endpoints;
  std::string prefix;

  /// The URL again, in its canonical spelling.
  std::string url() const;
  /// prefix + "/" + name.
  std::string key(const std::string& name) const { return prefix + "/" + name; }
};

/// True when `text` starts with "etcd://".
bool isEtcdUrl(const std::string& text);
/// Parses an etcd:// URL.
Result<EtcdLocation> parseEtcdUrl(const std::string& text);
/// Parses "http://HOST:PORT[,HOST:PORT...]" (or bare "HOST:PORT,..."), as for the config's
/// top-level "etcd" key.
Result<std::vector<HostPort>> parseEtcdEndpoints(const std::string& text);

/// A key as etcd stores it.
struct EtcdKeyValue {
  std::string key;
  std::string value;
  int64_t create_revision = 0;
  int64_t mod_revision = 0;
  int64_t version = 0;
  int64_t lease = 0;
};

/// The answer to a range read: the keys found and the store's revision at the time.
struct EtcdRange {
  std::vector<EtcdKeyValue> kvs;
  int64_t revision = 0;
};

/// One operation of a transaction (put or delete of a single key).
struct EtcdOp {
  enum class Kind { kPut, kDelete } kind = Kind::kPut;
  std::string key;
  std::string value;
  int64_t lease = 0;
};

/// A comparison guarding a transaction.
struct EtcdCompare {
  enum class Target { kModRevision, kCreateRevision, kValue } target = Target::kModRevision;
  std::string key;
  int64_t revision = 0;  ///< for the revision targets; 0 means "the key does not exist"
  std::string value;     ///< for kValue
};

/// A client of etcd's v3 JSON gateway (HTTP/1.1, keys and values base64 in JSON). Each call
/// tries the members in turn, starting with the last one that answered, until one answers.
/// Thread-safe; copies share nothing.
class EtcdClient {
 public:
  explicit EtcdClient(std::vector<HostPort> endpoints,
                      std::chrono::milliseconds timeout = std::chrono::seconds(2));

  /// One key, with the store revision; nullopt inside when the key is absent.
  Result<std::pair<std::optional<EtcdKeyValue>, int64_t>> get(const std::string& key);
  /// Every key starting with `prefix`, sorted by key.
  Result<EtcdRange> getPrefix(const std::string& prefix);
  /// The last key (in key order) starting with `prefix`, if any.
  Result<std::optional<EtcdKeyValue>> lastWithPrefix(const std::string& prefix);
  /// Stores `value` at `key` (attached to `lease` when not 0); returns the new revision.
  Result<int64_t> put(const std::string& key, const std::string& value, int64_t lease = 0);
  /// Deletes `key`.
  Result<void> remove(const std::string& key);
  /// Runs `success` when every comparison holds; returns whether they held.
  Result<bool> txn(const std::vector<EtcdCompare>& compares, const std::vector<EtcdOp>& success);
  /// Grants a lease of `ttl_seconds`; returns its id.
  Result<int64_t> grantLease(int64_t ttl_seconds);
  /// Renews `lease` once; fails with code "lease_expired" when etcd no longer knows it.
  Result<void> keepAlive(int64_t lease);
  /// Revokes `lease`, deleting its keys.
  Result<void> revokeLease(int64_t lease);

  /// Watches `key` (or [key, range_end) when range_end is set) from `start_revision` on one
  /// stream, calling `on_change` for each batch of changes as it arrives, until `wait` passes
  /// or `cancel` is set (then returns how many batches came). Fails when no member can be
  /// reached or the stream breaks; a compacted start revision counts as a change and ends it.
  Result<int> watch(const std::string& key, const std::string& range_end, int64_t start_revision,
                    std::chrono::milliseconds wait, const std::atomic<bool>& cancel,
                    const std::function<void()>& on_change);

  const std::vector<HostPort>& endpoints() const { return endpoints_; }

  /// The end of the range of keys that start with `prefix`.
  static std::string prefixEnd(const std::string& prefix);

 private:
  Result<std::string> call(const std::string& path, const std::string& body);

  std::vector<HostPort> endpoints_;
  std::chrono::milliseconds timeout_;
  std::shared_ptr<std::atomic<size_t>> preferred_;
};

/// Follows a key or a prefix from a thread of its own: hands the current keys to `on_snapshot`
/// at start and after every change (and every few seconds in between), retrying with backoff
/// while etcd cannot be reached (`on_error` says why).
class EtcdFollower {
 public:
  using Snapshot = std::function<void(const EtcdRange&)>;
  using Failure = std::function<void(const std::string&)>;

  /// Starts following `key` (every key starting with it when `prefix` is true).
  EtcdFollower(EtcdClient client, std::string key, bool prefix, Snapshot on_snapshot,
               Failure on_error);
  ~EtcdFollower();
  EtcdFollower(const EtcdFollower&) = delete;
  EtcdFollower& operator=(const EtcdFollower&) = delete;

  /// Stops the thread (returns once it has).
  void stop();

 private:
  void run();
  void pause(std::chrono::milliseconds duration);

  EtcdClient client_;
  std::string key_;
  bool prefix_;
  Snapshot on_snapshot_;
  Failure on_error_;
  std::atomic<bool> stop_{false};
  std::mutex mutex_;
  std::condition_variable wake_;
  std::thread thread_;
};

/// A lease kept alive from a thread of its own, with keys attached to it; when the lease is
/// lost (etcd unreachable longer than its TTL) a new one is granted and the keys put again.
/// Destruction revokes the lease, deleting the keys.
class EtcdLeaseKeeper {
 public:
  /// Grants a lease of `ttl_seconds` and puts `keys` (key, value) under it.
  static Result<std::unique_ptr<EtcdLeaseKeeper>> start(
      EtcdClient client, int64_t ttl_seconds,
      std::vector<std::pair<std::string, std::string>> keys);
  ~EtcdLeaseKeeper();
  EtcdLeaseKeeper(const EtcdLeaseKeeper&) = delete;
  EtcdLeaseKeeper& operator=(const EtcdLeaseKeeper&) = delete;

  /// Replaces the value of an attached key (put now and after every re-grant).
  void update(const std::string& key, const std::string& value);
  /// Stops the keep-alive and revokes the lease.
  void stop();
  int64_t lease() const { return lease_.load(); }

 private:
  EtcdLeaseKeeper(EtcdClient client, int64_t ttl_seconds);
  void run();
  Result<void> grantAndPut();

  EtcdClient client_;
  int64_t ttl_seconds_;
  std::atomic<int64_t> lease_{0};
  std::mutex mutex_;
  std::condition_variable wake_;
  bool stop_ = false;
  std::vector<std::pair<std::string, std::string>> keys_;
  std::thread thread_;
};

}  // namespace strangler::common
