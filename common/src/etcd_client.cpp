#include "strangler/common/etcd_client.h"

#include <Poco/Base64Decoder.h>
#include <Poco/Base64Encoder.h>
#include <Poco/Net/HTTPClientSession.h>
#include <Poco/Net/HTTPRequest.h>
#include <Poco/Net/HTTPResponse.h>
#include <Poco/Net/NetException.h>
#include <Poco/StreamCopier.h>

#include <algorithm>
#include <iostream>
#include <sstream>

#include <nlohmann/json.hpp>

namespace strangler::common {
namespace {

using nlohmann::json;

std::string base64(const std::string& text) {
  std::ostringstream out;
  Poco::Base64Encoder encoder(out);
  encoder.rdbuf()->setLineLength(0);
  encoder << text;
  encoder.close();
  return out.str();
}

std::string unbase64(const std::string& text) {
  std::istringstream in(text);
  Poco::Base64Decoder decoder(in);
  std::ostringstream out;
  Poco::StreamCopier::copyStream(decoder, out);
  return out.str();
}

// The gateway writes 64-bit integers as strings, and leaves out fields that are zero.
int64_t number(const json& object, const char* name) {
  if (!object.is_object() || !object.contains(name)) return 0;
  const auto& value = object[name];
  if (value.is_number_integer()) return value.get<int64_t>();
  if (value.is_string()) {
    try {
      return std::stoll(value.get<std::string>());
    } catch (const std::exception&) {
      return 0;
    }
  }
  return 0;
}

EtcdKeyValue keyValue(const json& kv) {
  EtcdKeyValue out;
  out.key = unbase64(kv.value("key", ""));
  out.value = unbase64(kv.value("value", ""));
  out.create_revision = number(kv, "create_revision");
  out.mod_revision = number(kv, "mod_revision");
  out.version = number(kv, "version");
  out.lease = number(kv, "lease");
  return out;
}

Result<json> parseAnswer(const Result<std::string>& body) {
  if (!body.ok()) return body.error();
  auto parsed = json::parse(*body, nullptr, false);
  if (parsed.is_discarded() || !parsed.is_object())
    return Result<json>::failure("etcd_protocol", "etcd answered something that is not JSON");
  return parsed;
}

// An HTTP session whose read buffer can be inspected, so a watch can wait for data with poll()
// without missing bytes already read from the socket.
class WatchSession : public Poco::Net::HTTPClientSession {
 public:
  using HTTPClientSession::HTTPClientSession;
  // More than the CRLF that ends a chunk: the start of another message.
  bool hasBuffered() const { return buffered() > 2; }
};

}  // namespace

std::string EtcdLocation::url() const {
  std::string text = "etcd://";
  for (size_t i = 0; i < endpoints.size(); ++i)
    text += (i ? "," : "") + endpoints[i].toString();
  return text + prefix;
}

bool isEtcdUrl(const std::string& text) {
  return text.rfind("etcd://", 0) == 0;
}

Result<std::vector<HostPort>> parseEtcdEndpoints(const std::string& text) {
  using R = Result<std::vector<HostPort>>;
  std::string rest = text;
  std::vector<HostPort> endpoints;
  std::stringstream items(rest);
  std::string item;
  while (std::getline(items, item, ',')) {
    if (item.rfind("http://", 0) == 0) item = item.substr(7);
    while (!item.empty() && item.back() == '/')
      item.pop_back();
    auto address = parseHostPort(item);
    if (!address.ok())
      return R::failure("invalid_etcd_url", "'" + text + "': " + address.error().message);
    if (address->port == 0) return R::failure("invalid_etcd_url", "'" + text + "': port 0");
    endpoints.push_back(*address);
  }
  if (endpoints.empty()) return R::failure("invalid_etcd_url", "'" + text + "': no HOST:PORT");
  return endpoints;
}

Result<EtcdLocation> parseEtcdUrl(const std::string& text) {
  using R = Result<EtcdLocation>;
  if (!isEtcdUrl(text))
    return R::failure("invalid_etcd_url", "'" + text + "' does not start with etcd://");
  const std::string rest = text.substr(7);
  const auto slash = rest.find('/');
  auto endpoints = parseEtcdEndpoints(rest.substr(0, slash));
  if (!endpoints.ok()) return endpoints.error();
  EtcdLocation location;
  location.endpoints = std::move(endpoints).value();
  if (slash != std::string::npos) location.prefix = rest.substr(slash);
  while (!location.prefix.empty() && location.prefix.back() == '/')
    location.prefix.pop_back();
  if (location.prefix.empty())
    return R::failure("invalid_etcd_url",
                      "'" + text + "' needs a key prefix (etcd://HOST:PORT/PREFIX)");
  return location;
}

EtcdClient::EtcdClient(std::vector<HostPort> endpoints, std::chrono::milliseconds timeout)
    : endpoints_(std::move(endpoints)),
      timeout_(timeout),
      preferred_(std::make_shared<std::atomic<size_t>>(0)) {}

std::string EtcdClient::prefixEnd(const std::string& prefix) {
  std::string end = prefix;
  while (!end.empty()) {
    if (static_cast<unsigned char>(end.back()) < 0xff) {
      end.back() = static_cast<char>(end.back() + 1);
      return end;
    }
    end.pop_back();
  }
  return std::string(1, '\0');  // every key
}

Result<std::string> EtcdClient::call(const std::string& path, const std::string& body) {
  std::string last_error = "no etcd endpoint configured";
  const size_t count = endpoints_.size();
  const size_t start = preferred_->load();
  const Poco::Timespan timeout(
      std::chrono::duration_cast<std::chrono::microseconds>(timeout_).count());
  for (size_t i = 0; i < count; ++i) {
    const size_t index = (start + i) % count;
    const auto& endpoint = endpoints_[index];
    try {
      Poco::Net::HTTPClientSession session(endpoint.host, endpoint.port);
      session.setTimeout(timeout, timeout, timeout);
      Poco::Net::HTTPRequest request(Poco::Net::HTTPRequest::HTTP_POST, path,
                                     Poco::Net::HTTPMessage::HTTP_1_1);
      request.setContentType("application/json");
      request.setContentLength(static_cast<std::streamsize>(body.size()));
      session.sendRequest(request) << body;
      Poco::Net::HTTPResponse response;
      std::istream& in = session.receiveResponse(response);
      std::ostringstream answer;
      Poco::StreamCopier::copyStream(in, answer);
      const int status = static_cast<int>(response.getStatus());
      if (status == 200) {
        preferred_->store(index);
        return answer.str();
      }
      last_error = endpoint.toString() + " answered " + std::to_string(status) + ": " +
                   answer.str().substr(0, 300);
      // A member without a leader or quorum answers 5xx: another one may do better.
      if (status < 500) return Result<std::string>::failure("etcd_refused", last_error);
    } catch (const Poco::Exception& error) {
      last_error = "cannot reach etcd at " + endpoint.toString() + ": " + error.displayText();
    } catch (const std::exception& error) {
      last_error = "cannot reach etcd at " + endpoint.toString() + ": " + error.what();
    }
  }
  return Result<std::string>::failure("etcd_unavailable", last_error);
}

Result<std::pair<std::optional<EtcdKeyValue>, int64_t>> EtcdClient::get(const std::string& key) {
  using R = Result<std::pair<std::optional<EtcdKeyValue>, int64_t>>;
  auto answer = parseAnswer(call("/v3/kv/range", json{{"key", base64(key)}}.dump()));
  if (!answer.ok()) return answer.error();
  std::optional<EtcdKeyValue> found;
  if (answer->contains("kvs") && (*answer)["kvs"].is_array() && !(*answer)["kvs"].empty())
    found = keyValue((*answer)["kvs"][0]);
  return R(std::pair{found, number(answer->value("header", json::object()), "revision")});
}

Result<EtcdRange> EtcdClient::getPrefix(const std::string& prefix) {
  auto answer = parseAnswer(
      call("/v3/kv/range",
           json{{"key", base64(prefix)}, {"range_end", base64(prefixEnd(prefix))}}.dump()));
  if (!answer.ok()) return answer.error();
  EtcdRange range;
  range.revision = number(answer->value("header", json::object()), "revision");
  if (answer->contains("kvs") && (*answer)["kvs"].is_array()) {
    for (const auto& kv : (*answer)["kvs"])
      range.kvs.push_back(keyValue(kv));
  }
  return range;
}

Result<std::optional<EtcdKeyValue>> EtcdClient::lastWithPrefix(const std::string& prefix) {
  auto answer = parseAnswer(call("/v3/kv/range", json{{"key", base64(prefix)},
                                                      {"range_end", base64(prefixEnd(prefix))},
                                                      {"limit", 1},
                                                      {"sort_order", "DESCEND"},
                                                      {"sort_target", "KEY"},
                                                      {"keys_only", true}}
                                                     .dump()));
  if (!answer.ok()) return answer.error();
  if (answer->contains("kvs") && (*answer)["kvs"].is_array() && !(*answer)["kvs"].empty())
    return std::optional<EtcdKeyValue>(keyValue((*answer)["kvs"][0]));
  return std::optional<EtcdKeyValue>();
}

Result<int64_t> EtcdClient::put(const std::string& key, const std::string& value, int64_t lease) {
  json request{{"key", base64(key)}, {"value", base64(value)}};
  if (lease != 0) request["lease"] = std::to_string(lease);
  auto answer = parseAnswer(call("/v3/kv/put", request.dump()));
  if (!answer.ok()) return answer.error();
  return number(answer->value("header", json::object()), "revision");
}

Result<void> EtcdClient::remove(const std::string& key) {
  auto answer = parseAnswer(call("/v3/kv/deleterange", json{{"key", base64(key)}}.dump()));
  if (!answer.ok()) return answer.error();
  return {};
}

Result<bool> EtcdClient::txn(const std::vector<EtcdCompare>& compares,
                             const std::vector<EtcdOp>& success) {
  json request{{"compare", json::array()}, {"success", json::array()}};
  for (const auto& compare : compares) {
    json c{{"key", base64(compare.key)}, {"result", "EQUAL"}};
    switch (compare.target) {
      case EtcdCompare::Target::kModRevision:
        c["target"] = "MOD";
        c["mod_revision"] = std::to_string(compare.revision);
        break;
      case EtcdCompare::Target::kCreateRevision:
        c["target"] = "CREATE";
        c["create_revision"] = std::to_string(compare.revision);
        break;
      case EtcdCompare::Target::kValue:
        c["target"] = "VALUE";
        c["value"] = base64(compare.value);
        break;
    }
    request["compare"].push_back(c);
  }
  for (const auto& op : success) {
    if (op.kind == EtcdOp::Kind::kPut) {
      json put{{"key", base64(op.key)}, {"value", base64(op.value)}};
      if (op.lease != 0) put["lease"] = std::to_string(op.lease);
      request["success"].push_back({{"request_put", put}});
    } else {
      request["success"].push_back({{"request_delete_range", {{"key", base64(op.key)}}}});
    }
  }
  auto answer = parseAnswer(call("/v3/kv/txn", request.dump()));
  if (!answer.ok()) return answer.error();
  return answer->value("succeeded", false);
}

Result<int64_t> EtcdClient::grantLease(int64_t ttl_seconds) {
  auto answer = parseAnswer(
      call("/v3/lease/grant", json{{"TTL", std::to_string(ttl_seconds)}, {"ID", "0"}}.dump()));
  if (!answer.ok()) return answer.error();
  const int64_t id = number(*answer, "ID");
  if (id == 0)
    return Result<int64_t>::failure("etcd_refused",
                                    "etcd granted no lease: " + answer->value("error", ""));
  return id;
}

Result<void> EtcdClient::keepAlive(int64_t lease) {
  auto answer =
      parseAnswer(call("/v3/lease/keepalive", json{{"ID", std::to_string(lease)}}.dump()));
  if (!answer.ok()) return answer.error();
  const json result = answer->value("result", json::object());
  if (number(result, "TTL") <= 0)
    return Result<void>::failure("lease_expired",
                                 "lease " + std::to_string(lease) + " has expired");
  return {};
}

Result<void> EtcdClient::revokeLease(int64_t lease) {
  auto answer = parseAnswer(call("/v3/lease/revoke", json{{"ID", std::to_string(lease)}}.dump()));
  if (!answer.ok()) return answer.error();
  return {};
}

Result<int> EtcdClient::watch(const std::string& key, const std::string& range_end,
                              int64_t start_revision, std::chrono::milliseconds wait,
                              const std::atomic<bool>& cancel,
                              const std::function<void()>& on_change) {
  json create{{"key", base64(key)}, {"start_revision", std::to_string(start_revision)}};
  if (!range_end.empty()) create["range_end"] = base64(range_end);
  const std::string body = json{{"create_request", create}}.dump();
  const auto deadline = std::chrono::steady_clock::now() + wait;
  const Poco::Timespan timeout(
      std::chrono::duration_cast<std::chrono::microseconds>(timeout_).count());
  std::string last_error = "no etcd endpoint configured";
  const size_t count = endpoints_.size();
  const size_t start = preferred_->load();
  for (size_t i = 0; i < count; ++i) {
    const size_t index = (start + i) % count;
    const auto& endpoint = endpoints_[index];
    try {
      WatchSession session(endpoint.host, endpoint.port);
      session.setTimeout(timeout, timeout, timeout);
      Poco::Net::HTTPRequest request(Poco::Net::HTTPRequest::HTTP_POST, "/v3/watch",
                                     Poco::Net::HTTPMessage::HTTP_1_1);
      request.setContentType("application/json");
      request.setContentLength(static_cast<std::streamsize>(body.size()));
      session.sendRequest(request) << body << std::flush;
      // Wait for the answer's head without blocking past the deadline or a cancel.
      while (!session.socket().poll(Poco::Timespan(0, 100000), Poco::Net::Socket::SELECT_READ)) {
        if (cancel.load() || std::chrono::steady_clock::now() >= deadline) return 0;
      }
      Poco::Net::HTTPResponse response;
      std::istream& in = session.receiveResponse(response);
      if (response.getStatus() != Poco::Net::HTTPResponse::HTTP_OK) {
        last_error = endpoint.toString() + " refused the watch (" +
                     std::to_string(static_cast<int>(response.getStatus())) + ")";
        continue;
      }
      preferred_->store(index);
      int changes = 0;
      // The answer is a stream of JSON objects; split it on the outermost braces. The stream
      // stays open: etcd delivers later changes on it at once, where a new watch starting in
      // the past would first wait for etcd's catch-up loop (up to 100 ms).
      std::string message;
      int depth = 0;
      bool in_string = false;
      bool escaped = false;
      for (;;) {
        if (cancel.load()) return changes;
        if (in.rdbuf()->in_avail() <= 0 && !session.hasBuffered()) {
          if (std::chrono::steady_clock::now() >= deadline) return changes;
          if (!session.socket().poll(Poco::Timespan(0, 100000), Poco::Net::Socket::SELECT_READ))
            continue;
        }
        const int c = in.get();
        if (c == std::char_traits<char>::eof())
          return Result<int>::failure("etcd_unavailable",
                                      "the watch on " + endpoint.toString() + " ended");
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
        if (c == '}' && --depth == 0) {
          const auto parsed = json::parse(message, nullptr, false);
          message.clear();
          if (parsed.is_discarded()) continue;
          const json result = parsed.value("result", json::object());
          if (result.contains("events") && result["events"].is_array() &&
              !result["events"].empty()) {
            ++changes;
            on_change();
            continue;
          }
          // Compacted past our revision, or canceled: the caller reads everything again.
          if (result.value("canceled", false) || number(result, "compact_revision") > 0) {
            on_change();
            return changes + 1;
          }
          if (parsed.contains("error"))
            return Result<int>::failure("etcd_refused", parsed["error"].dump());
        }
      }
    } catch (const Poco::Exception& error) {
      last_error = "cannot watch on etcd at " + endpoint.toString() + ": " + error.displayText();
    } catch (const std::exception& error) {
      last_error = "cannot watch on etcd at " + endpoint.toString() + ": " + error.what();
    }
  }
  return Result<int>::failure("etcd_unavailable", last_error);
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
  // An idle watch is renewed this often, which also notices a member that went silent.
  constexpr auto kWatchRenewal = std::chrono::milliseconds(5000);
  auto backoff = kFirstBackoff;
  const auto fail = [&](const std::string& why) {
    if (on_error_) on_error_(why);
    pause(backoff);
    backoff = std::min(backoff * 2, kMaxBackoff);
  };
  // Reads the keys and hands them over; false when etcd could not be read.
  const auto refresh = [&](int64_t& revision) {
    EtcdRange range;
    if (prefix_) {
      auto found = client_.getPrefix(key_);
      if (!found.ok()) {
        fail(found.error().message);
        return false;
      }
      range = std::move(found).value();
    } else {
      auto found = client_.get(key_);
      if (!found.ok()) {
        fail(found.error().message);
        return false;
      }
      if (found->first) range.kvs.push_back(*found->first);
      range.revision = found->second;
    }
    revision = range.revision;
    try {
      on_snapshot_(range);
    } catch (const std::exception& error) {
      if (on_error_) on_error_(std::string("applying etcd's keys failed: ") + error.what());
    }
    return true;
  };
  while (!stop_.load()) {
    int64_t revision = 0;
    if (!refresh(revision)) continue;
    backoff = kFirstBackoff;
    int64_t ignored = 0;
    auto watched = client_.watch(key_, prefix_ ? EtcdClient::prefixEnd(key_) : "", revision + 1,
                                 kWatchRenewal, stop_, [&] { refresh(ignored); });
    if (!watched.ok()) fail(watched.error().message);
  }
}

EtcdLeaseKeeper::EtcdLeaseKeeper(EtcdClient client, int64_t ttl_seconds)
    : client_(std::move(client)), ttl_seconds_(ttl_seconds) {}

Result<std::unique_ptr<EtcdLeaseKeeper>> EtcdLeaseKeeper::start(
    EtcdClient client, int64_t ttl_seconds, std::vector<std::pair<std::string, std::string>> keys) {
  std::unique_ptr<EtcdLeaseKeeper> keeper(new EtcdLeaseKeeper(std::move(client), ttl_seconds));
  keeper->keys_ = std::move(keys);
  if (auto granted = keeper->grantAndPut(); !granted.ok()) return granted.error();
  keeper->thread_ = std::thread([raw = keeper.get()] { raw->run(); });
  return keeper;
}

EtcdLeaseKeeper::~EtcdLeaseKeeper() {
  stop();
}

Result<void> EtcdLeaseKeeper::grantAndPut() {
  auto lease = client_.grantLease(ttl_seconds_);
  if (!lease.ok()) return lease.error();
  lease_ = *lease;
  std::vector<std::pair<std::string, std::string>> keys;
  {
    std::lock_guard lock(mutex_);
    keys = keys_;
  }
  for (const auto& [key, value] : keys) {
    auto put = client_.put(key, value, *lease);
    if (!put.ok()) return put.error();
  }
  return {};
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
    // Best effort: a failure here is repaired by the next re-grant.
    (void)client_.put(key, value, lease);
  }
}

void EtcdLeaseKeeper::run() {
  const auto period = std::chrono::milliseconds(std::max<int64_t>(ttl_seconds_ * 1000 / 3, 300));
  std::unique_lock lock(mutex_);
  while (!wake_.wait_for(lock, period, [this] { return stop_; })) {
    lock.unlock();
    auto kept = client_.keepAlive(lease_.load());
    if (!kept.ok() && kept.error().code == "lease_expired") {
      if (auto granted = grantAndPut(); !granted.ok())
        std::cerr << "etcd: cannot renew the registration: " << granted.error().message
                  << std::endl;
    }
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
  if (const int64_t lease = lease_.exchange(0); lease != 0) (void)client_.revokeLease(lease);
}

}  // namespace strangler::common
