// The watch stream, the follower built on it, and the lease keeper.
#include <Poco/Net/HTTPRequest.h>
#include <Poco/Net/HTTPResponse.h>
#include <Poco/Net/HTTPSClientSession.h>
#include <Poco/Net/NetException.h>
#include <Poco/StreamCopier.h>

#include <algorithm>
#include <iostream>
#include <map>

#include <nlohmann/json.hpp>

#include "etcd_shared.h"
#include "strangler/common/etcd_client.h"

namespace strangler::common {
namespace {

using nlohmann::json;

// A session whose read buffer can be inspected, so the watch can wait for data with poll()
// without missing bytes already read from the socket (or decrypted and held by TLS).
template <typename Base>
class Buffered : public Base {
 public:
  using Base::Base;
  bool hasBuffered() {
    // More than the CRLF that ends a chunk: the start of another message.
    return this->buffered() > 2 || this->socket().available() > 0;
  }
};

struct WatchSession {
  std::unique_ptr<Poco::Net::HTTPClientSession> session;
  std::function<bool()> has_buffered;
};

WatchSession openWatchSession(const HostPort& member, const Poco::Net::Context::Ptr& context) {
  WatchSession out;
  if (context) {
    auto session = std::make_unique<Buffered<Poco::Net::HTTPSClientSession>>(member.host,
                                                                             member.port, context);
    auto* raw = session.get();
    out.has_buffered = [raw] { return raw->hasBuffered(); };
    out.session = std::move(session);
  } else {
    auto session =
        std::make_unique<Buffered<Poco::Net::HTTPClientSession>>(member.host, member.port);
    auto* raw = session.get();
    out.has_buffered = [raw] { return raw->hasBuffered(); };
    out.session = std::move(session);
  }
  return out;
}

std::vector<EtcdEvent> eventsOf(const json& result) {
  std::vector<EtcdEvent> events;
  for (const auto& event : result.value("events", json::array())) {
    if (!event.is_object() || !event.contains("kv")) continue;
    EtcdEvent out;
    out.type =
        event.value("type", "PUT") == "DELETE" ? EtcdEvent::Type::kDelete : EtcdEvent::Type::kPut;
    out.kv = etcd_detail::keyValue(event["kv"]);
    events.push_back(std::move(out));
  }
  return events;
}

}  // namespace

Result<void> EtcdClient::watch(const std::string& key, const std::string& range_end,
                               int64_t start_revision, const std::atomic<bool>& cancel,
                               const EventsHandler& on_events) {
  using R = Result<void>;
  if (!shared_->setup_error.empty()) return R::failure("etcd_config", shared_->setup_error);
  json create{{"key", etcd_detail::base64(key)},
              {"start_revision", std::to_string(start_revision)}};
  if (!range_end.empty()) create["range_end"] = etcd_detail::base64(range_end);
  const std::string body = json{{"create_request", create}}.dump();
  const Poco::Timespan timeout(
      std::chrono::duration_cast<std::chrono::microseconds>(timeout_).count());
  const Poco::Timespan tick(0, 100000);
  std::string last_error = "no etcd endpoint configured";
  for (const HostPort& member : shared_->ordered()) {
    if (cancel.load()) return {};
    if (auto auth = shared_->ensureToken(member, timeout_); !auth.ok()) {
      if (auth.error().code == "etcd_auth") return auth.error();
      last_error = auth.error().message;
      continue;
    }
    try {
      WatchSession watch = openWatchSession(member, shared_->context());
      auto& session = *watch.session;
      session.setTimeout(timeout, timeout, timeout);
      Poco::Net::HTTPRequest request(Poco::Net::HTTPRequest::HTTP_POST, "/v3/watch",
                                     Poco::Net::HTTPMessage::HTTP_1_1);
      request.setContentType("application/json");
      request.setContentLength(static_cast<std::streamsize>(body.size()));
      // etcd's "require leader": the member ends the stream when it loses its leader, instead
      // of keeping it open and silent while the rest of the cluster moves on.
      request.set("Grpc-Metadata-hasleader", "true");
      const std::string used_token = shared_->token();
      if (!used_token.empty()) request.set("Authorization", used_token);
      session.sendRequest(request) << body << std::flush;
      // The answer's head comes at once from a live member.
      const auto head_deadline = std::chrono::steady_clock::now() + timeout_;
      while (!watch.has_buffered() &&
             !session.socket().poll(tick, Poco::Net::Socket::SELECT_READ)) {
        if (cancel.load()) return {};
        if (std::chrono::steady_clock::now() >= head_deadline)
          throw Poco::TimeoutException("no answer to the watch");
      }
      Poco::Net::HTTPResponse response;
      std::istream& in = session.receiveResponse(response);
      if (response.getStatus() != Poco::Net::HTTPResponse::HTTP_OK) {
        std::string answer;
        Poco::StreamCopier::copyToString(in, answer);
        const std::string message = etcd_detail::errorMessage(answer);
        if (etcd_detail::tokenRejected(message)) shared_->dropToken(used_token);
        last_error = member.toString() + " refused the watch (" +
                     std::to_string(static_cast<int>(response.getStatus())) + "): " + message;
        continue;
      }
      const auto watching_since = std::chrono::steady_clock::now();
      // The answer is a stream of JSON objects; split it on the outermost braces.
      std::string message;
      int depth = 0;
      bool in_string = false;
      bool escaped = false;
      for (;;) {
        if (cancel.load()) return {};
        if (in.rdbuf()->in_avail() <= 0 && !watch.has_buffered() &&
            !session.socket().poll(tick, Poco::Net::Socket::SELECT_READ)) {
          // A stopped member keeps the stream open and silent: when another call found it
          // unresponsive, move to a member that answers (the caller resumes from its revision).
          if (shared_->failedSince(member, watching_since))
            return R::failure("etcd_unavailable",
                              member.toString() + " stopped answering; watching elsewhere");
          continue;
        }
        const int c = in.get();
        if (c == std::char_traits<char>::eof())
          return R::failure("etcd_unavailable", "the watch on " + member.toString() + " ended");
        if (depth == 0 && c != '{') continue;
        message += static_cast<char>(c);
        if (in_string) {
          if (escaped) {
            escaped = false;
          } else if (c == '\\') {
            escaped = true;
          } else if (c == '"') {
            in_string = false;
          }
          continue;
        }
        if (c == '"') in_string = true;
        if (c == '{') ++depth;
        if (c != '}' || --depth != 0) continue;
        const auto parsed = json::parse(message, nullptr, false);
        message.clear();
        if (parsed.is_discarded() || !parsed.is_object()) continue;
        if (parsed.contains("error"))
          return R::failure("etcd_unavailable", member.toString() + " ended the watch: " +
                                                    etcd_detail::errorMessage(parsed.dump()));
        const json result = parsed.value("result", json::object());
        if (const int64_t compacted = etcd_detail::number(result, "compact_revision");
            compacted > 0) {
          return R::failure("compacted", "revision " + std::to_string(start_revision) +
                                             " was compacted (etcd keeps history from " +
                                             std::to_string(compacted) + ")");
        }
        if (result.value("canceled", false))
          return R::failure("etcd_unavailable",
                            member.toString() + " canceled the watch: " +
                                result.value("cancel_reason", std::string("no reason given")));
        if (auto events = eventsOf(result); !events.empty()) on_events(events);
      }
    } catch (const Poco::Exception& error) {
      last_error = "cannot watch on etcd at " + member.toString() + ": " + error.displayText();
    } catch (const std::exception& error) {
      last_error = "cannot watch on etcd at " + member.toString() + ": " + error.what();
    }
  }
  return R::failure("etcd_unavailable", last_error);
}

EtcdFollower::EtcdFollower(EtcdClient client, std::string key, bool prefix, Snapshot on_snapshot,
                           Failure on_error)
    : client_(std::move(client)),
      key_(std::move(key)),
      prefix_(prefix),
      on_snapshot_(std::move(on_snapshot)),
      on_error_(std::move(on_error)) {
  thread_ = std::thread([this] { run(); });
}

EtcdFollower::~EtcdFollower() {
  stop();
}

void EtcdFollower::stop() {
  {
    std::lock_guard lock(mutex_);
    stop_ = true;
  }
  wake_.notify_all();
  if (thread_.joinable()) thread_.join();
}

void EtcdFollower::pause(std::chrono::milliseconds duration) {
  std::unique_lock lock(mutex_);
  wake_.wait_for(lock, duration, [this] { return stop_.load(); });
}

void EtcdFollower::run() {
  constexpr auto kFirstBackoff = std::chrono::milliseconds(100);
  constexpr auto kMaxBackoff = std::chrono::milliseconds(2000);
  auto backoff = kFirstBackoff;
  const auto fail = [&](const std::string& why) {
    if (on_error_) on_error_(why);
    pause(backoff);
    backoff = std::min(backoff * 2, kMaxBackoff);
  };
  std::map<std::string, EtcdKeyValue> keys;  // what etcd holds, as far as the stream told
  int64_t revision = 0;                      // the last revision applied to `keys`
  const auto deliver = [&] {
    EtcdRange range;
    range.revision = revision;
    for (const auto& [key, kv] : keys)
      range.kvs.push_back(kv);
    try {
      on_snapshot_(range);
    } catch (const std::exception& error) {
      if (on_error_) on_error_(std::string("applying etcd's keys failed: ") + error.what());
    }
  };
  // Reads the keys whole: at start, and when the history the stream needs was compacted.
  const auto read = [&] {
    EtcdRange range;
    if (prefix_) {
      auto found = client_.getPrefix(key_);
      if (!found.ok()) return fail(found.error().message), false;
      range = std::move(found).value();
    } else {
      auto found = client_.get(key_);
      if (!found.ok()) return fail(found.error().message), false;
      if (found->first) range.kvs.push_back(*found->first);
      range.revision = found->second;
    }
    keys.clear();
    for (auto& kv : range.kvs)
      keys[kv.key] = std::move(kv);
    revision = range.revision;
    deliver();
    return true;
  };
  bool must_read = true;
  while (!stop_.load()) {
    if (must_read) {
      if (!read()) continue;
      must_read = false;
      backoff = kFirstBackoff;
    }
    auto watched = client_.watch(key_, prefix_ ? EtcdClient::prefixEnd(key_) : "", revision + 1,
                                 stop_, [&](const std::vector<EtcdEvent>& events) {
                                   for (const auto& event : events) {
                                     if (event.type == EtcdEvent::Type::kDelete) {
                                       keys.erase(event.kv.key);
                                     } else {
                                       keys[event.kv.key] = event.kv;
                                     }
                                     revision = std::max(revision, event.kv.mod_revision);
                                   }
                                   backoff = kFirstBackoff;
                                   deliver();
                                 });
    if (stop_.load()) break;
    if (watched.ok()) continue;
    if (watched.error().code == "compacted") {
      if (on_error_) on_error_(watched.error().message + "; reading the keys again");
      must_read = true;
      continue;
    }
    // Resume where the stream stopped, on whichever member answers.
    fail(watched.error().message);
  }
}

EtcdLeaseKeeper::EtcdLeaseKeeper(EtcdClient client, int64_t ttl_seconds)
    : client_(std::move(client)), ttl_seconds_(ttl_seconds) {}

Result<std::unique_ptr<EtcdLeaseKeeper>> EtcdLeaseKeeper::start(
    EtcdClient client, int64_t ttl_seconds, std::vector<std::pair<std::string, std::string>> keys,
    bool keep_trying) {
  std::unique_ptr<EtcdLeaseKeeper> keeper(new EtcdLeaseKeeper(std::move(client), ttl_seconds));
  keeper->keys_ = std::move(keys);
  if (auto granted = keeper->grantAndPut(); !granted.ok()) {
    if (!keep_trying) return granted.error();
    std::cerr << "etcd: cannot register yet (" << granted.error().message
              << "); trying again until it works" << std::endl;
  }
  keeper->thread_ = std::thread([raw = keeper.get()] { raw->run(); });
  return keeper;
}

EtcdLeaseKeeper::~EtcdLeaseKeeper() {
  stop();
}

Result<void> EtcdLeaseKeeper::putKeys(int64_t lease) {
  std::vector<std::pair<std::string, std::string>> keys;
  {
    std::lock_guard lock(mutex_);
    keys = keys_;
    keys_stale_ = false;
  }
  for (const auto& [key, value] : keys) {
    // A put whose answer was lost is put again on the next renewal (the same value under the
    // same lease: what it would have left).
    if (auto put = client_.put(key, value, lease); !put.ok()) {
      std::lock_guard lock(mutex_);
      keys_stale_ = true;
      return put.error();
    }
  }
  return {};
}

Result<void> EtcdLeaseKeeper::grantAndPut() {
  auto lease = client_.grantLease(ttl_seconds_);
  if (!lease.ok()) return lease.error();
  lease_ = *lease;
  return putKeys(*lease);
}

void EtcdLeaseKeeper::update(const std::string& key, const std::string& value) {
  {
    std::lock_guard lock(mutex_);
    bool found = false;
    for (auto& [k, v] : keys_) {
      if (k == key) {
        v = value;
        found = true;
      }
    }
    if (!found) keys_.emplace_back(key, value);
  }
  if (const int64_t lease = lease_.load(); lease != 0) {
    if (!client_.put(key, value, lease).ok()) {
      std::lock_guard lock(mutex_);
      keys_stale_ = true;
    }
  }
}

void EtcdLeaseKeeper::onRegrant(std::function<void()> callback) {
  std::lock_guard lock(mutex_);
  on_regrant_ = std::move(callback);
}

void EtcdLeaseKeeper::run() {
  const auto period = std::chrono::milliseconds(std::max<int64_t>(ttl_seconds_ * 1000 / 3, 300));
  // A renewal must not outlive the lease it renews.
  EtcdClient renewals = client_.withBudget(period);
  std::unique_lock lock(mutex_);
  while (!wake_.wait_for(lock, period, [this] { return stop_; })) {
    const bool stale = keys_stale_;
    lock.unlock();
    // Not registered yet (etcd refused at start) counts as a lost lease.
    auto kept = lease_.load() == 0 ? Result<void>::failure("lease_expired", "not registered yet")
                                   : renewals.keepAlive(lease_.load());
    Result<void> repaired;
    bool registered = false;  // a new lease, or keys a failed put had left out, now in place
    if (!kept.ok() && kept.error().code == "lease_expired") {
      repaired = grantAndPut();
      registered = repaired.ok();
    } else if (kept.ok() && stale) {
      repaired = putKeys(lease_.load());
      registered = repaired.ok();
    }
    if (registered) {
      std::function<void()> regranted;
      {
        std::lock_guard callback_lock(mutex_);
        regranted = on_regrant_;
      }
      if (regranted) regranted();
    }
    if (!repaired.ok())
      std::cerr << "etcd: cannot renew the registration: " << repaired.error().message << std::endl;
    lock.lock();
  }
}

void EtcdLeaseKeeper::stop() {
  {
    std::lock_guard lock(mutex_);
    if (stop_) return;
    stop_ = true;
  }
  wake_.notify_all();
  if (thread_.joinable()) thread_.join();
  // Best effort and brief: with etcd gone the lease expires on its own.
  if (const int64_t lease = lease_.exchange(0); lease != 0)
    (void)client_.withBudget(std::chrono::seconds(2)).revokeLease(lease);
}

}  // namespace strangler::common
