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
/// Parses "http://HOST:PORT[,HOST:PORT...]" (or bare "HOST:PORT,..."; "https://" too), as for
/// the config's top-level "etcd" key.
Result<std::vector<HostPort>> parseEtcdEndpoints(const std::string& text);

/// How to reach the members beyond their addresses: TLS (etcd's `--cert-file`, and a client
/// certificate for `--client-cert-auth`) and etcd's own user/password authentication. Every
/// binary reads it from the same environment variables, so one setting covers the proxy, the CLI
/// and the services' registration:
///   STRANGLER_ETCD_CA_FILE       PEM bundle the members' certificates must chain to (turns TLS on)
///   STRANGLER_ETCD_TLS=1         TLS with the system's CAs
///   STRANGLER_ETCD_CERT_FILE, STRANGLER_ETCD_KEY_FILE   client certificate and key
///   STRANGLER_ETCD_USER, STRANGLER_ETCD_PASSWORD (or STRANGLER_ETCD_PASSWORD_FILE)
struct EtcdSecurity {
  bool tls = false;
  std::string ca_file;
  std::string cert_file;
  std::string key_file;
  std::string user;
  std::string password;

  /// The settings above; an error names a variable that cannot be used (an unreadable file).
  static Result<EtcdSecurity> fromEnvironment();
};

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

/// One change seen by a watch: a put (kv holds the new value) or a delete (kv.key, and
/// kv.mod_revision is the revision of the delete).
struct EtcdEvent {
  enum class Type { kPut, kDelete } type = Type::kPut;
  EtcdKeyValue kv;
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

/// What makes a transaction safe to send again: a key it creates with a value no other call
/// writes (e.g. a journal line carrying a random operation id). The transaction then also
/// requires that key to be absent, so it can apply at most once however often it is sent, and an
/// attempt whose answer was lost is settled by reading the key back.
struct EtcdTxnId {
  std::string key;
  std::string value;
};

/// A client of etcd's v3 JSON gateway.
///
/// Why the JSON gateway and not etcd's gRPC API: Debian 12 ships libgrpc++ but not etcd's .proto
/// files, so the gRPC route means writing and keeping our own copy of etcd's API definitions and
/// running protoc in the build, for calls the gateway already carries one-to-one (it is etcd's
/// gRPC server behind a JSON codec, with the same transactions, leases, watch streams, auth and
/// TLS). What the gRPC client library would add is done here: pooled keep-alive connections,
/// retries that never apply a write twice, member discovery, and watches that resume.
///
/// - Calls try the members in turn, starting with the last one that answered, and go round again
///   with a short backoff until the call's budget (10 s by default) is spent, so an election
///   (1-3 s after a leader dies) is ridden out rather than reported.
/// - Reads, lease renewals, grants and deletes are sent again freely. A put or a transaction is
///   sent again only when it surely did not reach etcd (no connection, or etcd said it was not
///   proposed: "no leader"); after an unknown outcome (a timeout, a connection cut after the
///   request went out, "request timed out") it fails with code "etcd_unknown_outcome" — unless
///   the transaction carries an EtcdTxnId, which makes every resend safe.
/// - Connections are kept alive and reused, at most 4 idle ones per member.
/// - The member list is learnt from the cluster (at the first call, and again after a member
///   stopped answering), so members added after start are used when the configured ones are gone.
/// - With a user, a token is taken from /v3/auth/authenticate and renewed when etcd says it has
///   expired; a wrong password fails with code "etcd_auth".
/// Thread-safe. Copies, and every client of the same members built from the environment, share
/// the connections, the member list, the token and which members stopped answering.
class EtcdClient {
 public:
  /// Reaches `endpoints` with the security settings of the environment (EtcdSecurity).
  explicit EtcdClient(std::vector<HostPort> endpoints,
                      std::chrono::milliseconds timeout = std::chrono::seconds(2));
  /// With `learn_members` false only `endpoints` are ever used (as a client behind a partition).
  EtcdClient(std::vector<HostPort> endpoints, EtcdSecurity security,
             std::chrono::milliseconds timeout = std::chrono::seconds(2),
             bool learn_members = true);

  /// A copy (sharing connections) whose calls give up after `budget` in all.
  EtcdClient withBudget(std::chrono::milliseconds budget) const;

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
  /// Runs `success` when every comparison holds; returns whether they held (with `id`: whether
  /// this call's transaction applied, on this attempt or an earlier one whose answer was lost).
  Result<bool> txn(std::vector<EtcdCompare> compares, std::vector<EtcdOp> success,
                   const std::optional<EtcdTxnId>& id = std::nullopt);
  /// Grants a lease of `ttl_seconds`; returns its id.
  Result<int64_t> grantLease(int64_t ttl_seconds);
  /// Renews `lease` once; fails with code "lease_expired" when etcd no longer knows it.
  Result<void> keepAlive(int64_t lease);
  /// Revokes `lease`, deleting its keys.
  Result<void> revokeLease(int64_t lease);

  using EventsHandler = std::function<void(const std::vector<EtcdEvent>&)>;
  /// Watches `key` (or [key, range_end) when range_end is set) from `start_revision` on one
  /// stream that stays open, calling `on_events` for each batch of changes as it arrives, until
  /// `cancel` is set (then returns success). Fails when no member can be reached, the stream
  /// breaks, or the member loses its leader (code "etcd_unavailable": resume from the revision
  /// after the last event seen), or when `start_revision` was compacted away (code
  /// "compacted": read the keys again). The stream asks the member to end it when it has no
  /// leader, so a member cut off from the others does not keep a watch silently stale.
  Result<void> watch(const std::string& key, const std::string& range_end, int64_t start_revision,
                     const std::atomic<bool>& cancel, const EventsHandler& on_events);

  /// The members known now: the configured ones and those the cluster listed, the one that
  /// answered last first.
  std::vector<HostPort> members() const;
  /// Writes whose answer was lost (a timeout or a cut connection after the request went out, or
  /// "request timed out"), by every client of this process.
  static uint64_t lostAnswersInProcess();

  /// The end of the range of keys that start with `prefix`.
  static std::string prefixEnd(const std::string& prefix);

  struct Shared;

 private:
  /// kRead and kIdempotent are sent again after any failure; kIfNotProposed only when etcd
  /// surely did not apply it.
  enum class Resend { kRead, kIdempotent, kIfNotProposed };
  Result<std::string> call(const std::string& path, const std::string& body, Resend resend);
  void refreshMembers();

  std::shared_ptr<Shared> shared_;
  std::chrono::milliseconds timeout_;
  std::chrono::milliseconds budget_;
};

/// Follows a key or a prefix from a thread of its own: reads the keys once, then follows the
/// watch stream, applying its events to the copy it keeps, and hands the current keys to
/// `on_snapshot` at start and after every change. A broken stream resumes from the revision after
/// the last event seen (nothing is read again); only a compacted revision makes it read the keys
/// again. While etcd cannot be reached it retries with backoff (`on_error` says why) and the
/// caller keeps what it had. An idle follower sends nothing.
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
  /// Grants a lease of `ttl_seconds` and puts `keys` (key, value) under it. When that fails the
  /// error is returned, unless `keep_trying`: then the keeper starts anyway and registers as soon
  /// as etcd lets it (lease() is 0 until then).
  static Result<std::unique_ptr<EtcdLeaseKeeper>> start(
      EtcdClient client, int64_t ttl_seconds, std::vector<std::pair<std::string, std::string>> keys,
      bool keep_trying = false);
  ~EtcdLeaseKeeper();
  EtcdLeaseKeeper(const EtcdLeaseKeeper&) = delete;
  EtcdLeaseKeeper& operator=(const EtcdLeaseKeeper&) = delete;

  /// Replaces the value of an attached key (put now and after every re-grant).
  void update(const std::string& key, const std::string& value);
  /// Called (on the keeper's thread) after the keys were put again: under a new lease (the last
  /// one was lost, or a first one was granted late) or after a put etcd had refused.
  void onRegrant(std::function<void()> callback);
  /// Stops the keep-alive and revokes the lease.
  void stop();
  int64_t lease() const { return lease_.load(); }

 private:
  EtcdLeaseKeeper(EtcdClient client, int64_t ttl_seconds);
  void run();
  Result<void> grantAndPut();
  Result<void> putKeys(int64_t lease);

  EtcdClient client_;
  int64_t ttl_seconds_;
  std::atomic<int64_t> lease_{0};
  std::mutex mutex_;
  std::condition_variable wake_;
  bool stop_ = false;
  bool keys_stale_ = false;  ///< a put failed: put every key again on the next renewal
  std::function<void()> on_regrant_;
  std::vector<std::pair<std::string, std::string>> keys_;
  std::thread thread_;
};

}  // namespace strangler::common
