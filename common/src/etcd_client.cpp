#include "strangler/common/etcd_client.h"

#include <Poco/Base64Decoder.h>
#include <Poco/Base64Encoder.h>
#include <Poco/Net/HTTPRequest.h>
#include <Poco/Net/HTTPResponse.h>
#include <Poco/Net/HTTPSClientSession.h>
#include <Poco/Net/NetException.h>
#include <Poco/StreamCopier.h>

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <fstream>
#include <map>
#include <mutex>
#include <sstream>
#include <thread>

#include <nlohmann/json.hpp>

#include "etcd_shared.h"

namespace strangler::common {
namespace etcd_detail {

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

std::string errorMessage(const std::string& body) {
  const auto parsed = json::parse(body, nullptr, false);
  if (parsed.is_object()) {
    const json error = parsed.value("error", json());
    if (error.is_string()) return error.get<std::string>();
    if (error.is_object() && error.contains("message") && error["message"].is_string())
      return error["message"].get<std::string>();
    if (parsed.contains("message") && parsed["message"].is_string())
      return parsed["message"].get<std::string>();
  }
  return body.substr(0, 300);
}

bool notProposed(const std::string& message) {
  // Refused before the request entered the raft log; anything else (notably "request timed
  // out", "leader changed", "context deadline exceeded") may have been applied.
  for (const char* known : {"etcdserver: no leader", "etcdserver: not capable",
                            "etcdserver: too many requests", "etcdserver: server stopped"}) {
    if (message.find(known) != std::string::npos) return true;
  }
  return false;
}

bool tokenRejected(const std::string& message) {
  return message.find("invalid auth token") != std::string::npos ||
         message.find("auth token is expired") != std::string::npos ||
         message.find("user name is empty") != std::string::npos;
}

}  // namespace etcd_detail

using etcd_detail::Exchange;
using etcd_detail::number;
using nlohmann::json;

namespace {

Result<json> parseAnswer(const Result<std::string>& body) {
  if (!body.ok()) return body.error();
  auto parsed = json::parse(*body, nullptr, false);
  if (parsed.is_discarded() || !parsed.is_object())
    return Result<json>::failure("etcd_protocol", "etcd answered something that is not JSON");
  return parsed;
}

constexpr size_t kMaxIdlePerMember = 4;
constexpr auto kMembersPeriod = std::chrono::seconds(5);
constexpr auto kDefaultBudget = std::chrono::seconds(10);

std::atomic<uint64_t> lost_answers{0};

std::string environment(const char* name) {
  const char* value = std::getenv(name);
  return value ? value : "";
}

Poco::Timespan span(std::chrono::milliseconds duration) {
  return Poco::Timespan(std::chrono::duration_cast<std::chrono::microseconds>(duration).count());
}

bool sameMember(const HostPort& a, const HostPort& b) {
  return a.host == b.host && a.port == b.port;
}

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
    if (item.rfind("https://", 0) == 0) item = item.substr(8);
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

Result<EtcdSecurity> EtcdSecurity::fromEnvironment() {
  using R = Result<EtcdSecurity>;
  EtcdSecurity security;
  security.ca_file = environment("STRANGLER_ETCD_CA_FILE");
  security.cert_file = environment("STRANGLER_ETCD_CERT_FILE");
  security.key_file = environment("STRANGLER_ETCD_KEY_FILE");
  security.tls = !security.ca_file.empty() || environment("STRANGLER_ETCD_TLS") == "1" ||
                 !security.cert_file.empty();
  security.user = environment("STRANGLER_ETCD_USER");
  security.password = environment("STRANGLER_ETCD_PASSWORD");
  if (const std::string file = environment("STRANGLER_ETCD_PASSWORD_FILE"); !file.empty()) {
    std::ifstream in(file);
    if (!in) return R::failure("etcd_config", "STRANGLER_ETCD_PASSWORD_FILE: cannot read " + file);
    std::getline(in, security.password);
  }
  for (const auto& [name, path] : {std::pair{"STRANGLER_ETCD_CA_FILE", security.ca_file},
                                   {"STRANGLER_ETCD_CERT_FILE", security.cert_file},
                                   {"STRANGLER_ETCD_KEY_FILE", security.key_file}}) {
    if (!path.empty() && !std::ifstream(path))
      return R::failure("etcd_config", std::string(name) + ": cannot read " + path);
  }
  if (security.cert_file.empty() != security.key_file.empty())
    return R::failure("etcd_config",
                      "STRANGLER_ETCD_CERT_FILE and STRANGLER_ETCD_KEY_FILE go together");
  if (!security.password.empty() && security.user.empty())
    return R::failure("etcd_config", "an etcd password is set but STRANGLER_ETCD_USER is not");
  return security;
}

EtcdClient::Shared::Shared(std::vector<HostPort> seeds, EtcdSecurity security_in)
    : security(std::move(security_in)), seeds_(std::move(seeds)), members_(seeds_) {
  if (!security.tls) return;
  try {
    // Peers are verified against the CA (or the system's), host names included.
    context_ = new Poco::Net::Context(
        Poco::Net::Context::TLS_CLIENT_USE, security.key_file, security.cert_file, security.ca_file,
        Poco::Net::Context::VERIFY_RELAXED, 9, security.ca_file.empty());
  } catch (const Poco::Exception& error) {
    setup_error = "cannot set up TLS for etcd: " + error.displayText();
  }
}

std::vector<HostPort> EtcdClient::Shared::ordered() const {
  std::lock_guard lock(mutex_);
  std::vector<HostPort> out = members_;
  const auto first = std::find_if(out.begin(), out.end(), [&](const HostPort& member) {
    return member.toString() == preferred_;
  });
  if (first != out.end()) std::rotate(out.begin(), first, out.end());
  return out;
}

void EtcdClient::Shared::prefer(const HostPort& member) {
  std::lock_guard lock(mutex_);
  preferred_ = member.toString();
}

std::unique_ptr<Poco::Net::HTTPClientSession> EtcdClient::Shared::open(
    const HostPort& member) const {
  if (context_)
    return std::make_unique<Poco::Net::HTTPSClientSession>(member.host, member.port, context_);
  return std::make_unique<Poco::Net::HTTPClientSession>(member.host, member.port);
}

std::unique_ptr<Poco::Net::HTTPClientSession> EtcdClient::Shared::take(const HostPort& member) {
  for (;;) {
    std::unique_ptr<Poco::Net::HTTPClientSession> session;
    {
      std::lock_guard lock(mutex_);
      auto& idle = idle_[member.toString()];
      if (idle.empty()) break;
      session = std::move(idle.back());
      idle.pop_back();
    }
    // A kept connection the member closed (a restart) reads as readable at once: drop it rather
    // than send a request into it and not know whether it arrived.
    try {
      if (session->connected() &&
          !session->socket().poll(Poco::Timespan(0),
                                  Poco::Net::Socket::SELECT_READ | Poco::Net::Socket::SELECT_ERROR))
        return session;
    } catch (const Poco::Exception&) {
    }
  }
  return open(member);
}

void EtcdClient::Shared::giveBack(const HostPort& member,
                                  std::unique_ptr<Poco::Net::HTTPClientSession> session) {
  std::lock_guard lock(mutex_);
  auto& idle = idle_[member.toString()];
  if (idle.size() < kMaxIdlePerMember) idle.push_back(std::move(session));
}

Exchange EtcdClient::Shared::exchange(const HostPort& member, const std::string& path,
                                      const std::string& body, std::chrono::milliseconds timeout) {
  Exchange out;
  bool sent = false;
  try {
    auto session = take(member);
    session->setTimeout(span(timeout), span(timeout), span(timeout));
    Poco::Net::HTTPRequest request(Poco::Net::HTTPRequest::HTTP_POST, path,
                                   Poco::Net::HTTPMessage::HTTP_1_1);
    request.setContentType("application/json");
    request.setContentLength(static_cast<std::streamsize>(body.size()));
    request.setKeepAlive(true);
    if (const std::string current = token(); !current.empty())
      request.set("Authorization", current);
    std::ostream& stream = session->sendRequest(request);
    stream << body;
    stream.flush();
    sent = true;
    Poco::Net::HTTPResponse response;
    std::istream& in = session->receiveResponse(response);
    Poco::StreamCopier::copyToString(in, out.body);
    out.how = Exchange::How::kAnswered;
    out.status = static_cast<int>(response.getStatus());
    if (response.getKeepAlive()) giveBack(member, std::move(session));
  } catch (const Poco::Exception& error) {
    out.how = sent ? Exchange::How::kLost : Exchange::How::kNotSent;
    out.error = error.displayText();
  } catch (const std::exception& error) {
    out.how = sent ? Exchange::How::kLost : Exchange::How::kNotSent;
    out.error = error.what();
  }
  return out;
}

std::string EtcdClient::Shared::token() const {
  std::lock_guard lock(mutex_);
  return token_;
}

void EtcdClient::Shared::dropToken(const std::string& used) {
  std::lock_guard lock(mutex_);
  if (token_ == used) token_.clear();
}

Result<void> EtcdClient::Shared::ensureToken(const HostPort& member,
                                             std::chrono::milliseconds timeout) {
  if (security.user.empty() || !token().empty()) return {};
  const std::string body = json{{"name", security.user}, {"password", security.password}}.dump();
  const Exchange answer = exchange(member, "/v3/auth/authenticate", body, timeout);
  if (answer.how != Exchange::How::kAnswered)
    return Result<void>::failure("etcd_unavailable",
                                 "cannot reach etcd at " + member.toString() + ": " + answer.error);
  const std::string message = etcd_detail::errorMessage(answer.body);
  if (answer.status != 200) {
    // A cluster without auth turned on needs no token.
    if (message.find("authentication is not enabled") != std::string::npos) return {};
    if (answer.status >= 500)
      return Result<void>::failure("etcd_unavailable", member.toString() + ": " + message);
    return Result<void>::failure("etcd_auth",
                                 "etcd refused user '" + security.user + "': " + message +
                                     " (STRANGLER_ETCD_USER / STRANGLER_ETCD_PASSWORD)");
  }
  const auto parsed = json::parse(answer.body, nullptr, false);
  const std::string issued = parsed.is_object() ? parsed.value("token", "") : "";
  std::lock_guard lock(mutex_);
  token_ = issued;
  return {};
}

void EtcdClient::Shared::setListed(const std::vector<HostPort>& listed) {
  std::lock_guard lock(mutex_);
  members_ = seeds_;
  for (const auto& member : listed) {
    if (std::none_of(members_.begin(), members_.end(),
                     [&](const HostPort& known) { return sameMember(known, member); }))
      members_.push_back(member);
  }
}

void EtcdClient::Shared::markFailed(const HostPort& member) {
  std::lock_guard lock(mutex_);
  failed_at_[member.toString()] = std::chrono::steady_clock::now();
}

bool EtcdClient::Shared::failedSince(const HostPort& member,
                                     std::chrono::steady_clock::time_point since) const {
  std::lock_guard lock(mutex_);
  const auto it = failed_at_.find(member.toString());
  return it != failed_at_.end() && it->second > since;
}

bool EtcdClient::Shared::membersDue() {
  // Once at the start, then only after a member stopped answering (not on a timer: an idle
  // client sends nothing), at most every few seconds.
  std::lock_guard lock(mutex_);
  const auto now = std::chrono::steady_clock::now();
  const bool first = members_checked_ == std::chrono::steady_clock::time_point{};
  bool failed_since = false;
  for (const auto& [member, at] : failed_at_)
    failed_since = failed_since || at > members_checked_;
  if (!first && !(failed_since && now - members_checked_ >= kMembersPeriod)) return false;
  members_checked_ = now;
  return true;
}

namespace {

// Every client of the same members in a process shares one state (connections, member list,
// token, and which members stopped answering: the lease keeper's failed renewal tells the
// config's watch that its member went silent).
std::shared_ptr<EtcdClient::Shared> sharedFromEnvironment(std::vector<HostPort> endpoints) {
  static std::mutex mutex;
  static std::map<std::string, std::weak_ptr<EtcdClient::Shared>> states;
  std::string key;
  for (const auto& endpoint : endpoints)
    key += endpoint.toString() + ",";
  std::lock_guard lock(mutex);
  if (auto existing = states[key].lock()) return existing;
  auto security = EtcdSecurity::fromEnvironment();
  auto shared = std::make_shared<EtcdClient::Shared>(std::move(endpoints),
                                                     security.ok() ? *security : EtcdSecurity{});
  if (!security.ok()) shared->setup_error = security.error().message;
  states[key] = shared;
  return shared;
}

}  // namespace

EtcdClient::EtcdClient(std::vector<HostPort> endpoints, std::chrono::milliseconds timeout)
    : shared_(sharedFromEnvironment(std::move(endpoints))),
      timeout_(timeout),
      budget_(kDefaultBudget) {}

EtcdClient::EtcdClient(std::vector<HostPort> endpoints, EtcdSecurity security,
                       std::chrono::milliseconds timeout, bool learn_members)
    : shared_(std::make_shared<Shared>(std::move(endpoints), std::move(security))),
      timeout_(timeout),
      budget_(kDefaultBudget) {
  shared_->learn_members = learn_members;
}

uint64_t EtcdClient::lostAnswersInProcess() {
  return lost_answers.load();
}

EtcdClient EtcdClient::withBudget(std::chrono::milliseconds budget) const {
  EtcdClient copy = *this;
  copy.budget_ = budget;
  return copy;
}

std::vector<HostPort> EtcdClient::members() const {
  return shared_->ordered();
}

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

Result<std::string> EtcdClient::call(const std::string& path, const std::string& body,
                                     Resend resend) {
  using R = Result<std::string>;
  if (!shared_->setup_error.empty()) return R::failure("etcd_config", shared_->setup_error);
  const auto deadline = std::chrono::steady_clock::now() + budget_;
  auto backoff = std::chrono::milliseconds(50);
  std::string last_error = "no etcd endpoint configured";
  int reauthentications = 2;
  bool maybe_applied = false;
  const auto unknown = [&](const std::string& why) {
    return R::failure("etcd_unknown_outcome",
                      why + " — the write may or may not have been applied; read before retrying");
  };
  for (;;) {
    const std::vector<HostPort> members = shared_->ordered();
    for (size_t i = 0; i < members.size(); ++i) {
      const HostPort& member = members[i];
      if (auto auth = shared_->ensureToken(member, timeout_); !auth.ok()) {
        if (auth.error().code == "etcd_auth") return auth.error();
        last_error = auth.error().message;
        continue;
      }
      const std::string used_token = shared_->token();
      const Exchange answer = shared_->exchange(member, path, body, timeout_);
      if (answer.how != Exchange::How::kAnswered) shared_->markFailed(member);
      if (answer.how == Exchange::How::kNotSent) {
        last_error = "cannot reach etcd at " + member.toString() + ": " + answer.error;
        continue;
      }
      if (answer.how == Exchange::How::kLost) {
        last_error = "no answer from etcd at " + member.toString() + ": " + answer.error;
        maybe_applied = true;
        if (resend != Resend::kRead) ++lost_answers;
        if (resend == Resend::kIfNotProposed) return unknown(last_error);
        continue;
      }
      if (answer.status == 200) {
        shared_->prefer(member);
        if (shared_->learn_members && shared_->membersDue()) refreshMembers();
        return answer.body;
      }
      const std::string message = etcd_detail::errorMessage(answer.body);
      last_error =
          member.toString() + " answered " + std::to_string(answer.status) + ": " + message;
      if (etcd_detail::tokenRejected(message)) {
        if (shared_->security.user.empty())
          return R::failure("etcd_auth", last_error +
                                             " (etcd has authentication on: set "
                                             "STRANGLER_ETCD_USER and STRANGLER_ETCD_PASSWORD)");
        if (reauthentications-- > 0) {
          // The token expired (or the member restarted): authenticate again, same member.
          shared_->dropToken(used_token);
          --i;
          continue;
        }
      }
      if (answer.status == 401 || answer.status == 403) return R::failure("etcd_auth", last_error);
      // A member without a leader or quorum answers 5xx: another one may do better.
      if (answer.status < 500) return R::failure("etcd_refused", last_error);
      if (!etcd_detail::notProposed(message)) {
        maybe_applied = true;
        if (resend != Resend::kRead) ++lost_answers;
        if (resend == Resend::kIfNotProposed) return unknown(last_error);
      }
    }
    if (std::chrono::steady_clock::now() + backoff >= deadline) {
      // A write sent out and never answered may still apply: say so rather than "failed".
      if (maybe_applied && resend != Resend::kRead) return unknown(last_error);
      return R::failure("etcd_unavailable", last_error);
    }
    std::this_thread::sleep_for(backoff);
    backoff = std::min(backoff * 2, std::chrono::milliseconds(1000));
  }
}

void EtcdClient::refreshMembers() {
  const std::vector<HostPort> members = shared_->ordered();
  if (members.empty()) return;
  const Exchange answer =
      shared_->exchange(members.front(), "/v3/cluster/member/list", "{}", timeout_);
  if (answer.how != Exchange::How::kAnswered || answer.status != 200) return;
  const auto parsed = json::parse(answer.body, nullptr, false);
  if (!parsed.is_object() || !parsed.contains("members") || !parsed["members"].is_array()) return;
  std::vector<HostPort> listed;
  for (const auto& member : parsed["members"]) {
    if (!member.is_object()) continue;
    for (const auto& url : member.value("clientURLs", json::array())) {
      if (!url.is_string()) continue;
      auto parsed_url = parseEtcdEndpoints(url.get<std::string>());
      if (parsed_url.ok()) listed.insert(listed.end(), parsed_url->begin(), parsed_url->end());
    }
  }
  if (!listed.empty()) shared_->setListed(listed);
}

Result<std::pair<std::optional<EtcdKeyValue>, int64_t>> EtcdClient::get(const std::string& key) {
  using R = Result<std::pair<std::optional<EtcdKeyValue>, int64_t>>;
  auto answer = parseAnswer(
      call("/v3/kv/range", json{{"key", etcd_detail::base64(key)}}.dump(), Resend::kRead));
  if (!answer.ok()) return answer.error();
  std::optional<EtcdKeyValue> found;
  if (answer->contains("kvs") && (*answer)["kvs"].is_array() && !(*answer)["kvs"].empty())
    found = etcd_detail::keyValue((*answer)["kvs"][0]);
  return R(std::pair{found, number(answer->value("header", json::object()), "revision")});
}

Result<EtcdRange> EtcdClient::getPrefix(const std::string& prefix) {
  auto answer = parseAnswer(call("/v3/kv/range",
                                 json{{"key", etcd_detail::base64(prefix)},
                                      {"range_end", etcd_detail::base64(prefixEnd(prefix))}}
                                     .dump(),
                                 Resend::kRead));
  if (!answer.ok()) return answer.error();
  EtcdRange range;
  range.revision = number(answer->value("header", json::object()), "revision");
  if (answer->contains("kvs") && (*answer)["kvs"].is_array()) {
    for (const auto& kv : (*answer)["kvs"])
      range.kvs.push_back(etcd_detail::keyValue(kv));
  }
  return range;
}

Result<std::optional<EtcdKeyValue>> EtcdClient::lastWithPrefix(const std::string& prefix) {
  auto answer = parseAnswer(call("/v3/kv/range",
                                 json{{"key", etcd_detail::base64(prefix)},
                                      {"range_end", etcd_detail::base64(prefixEnd(prefix))},
                                      {"limit", 1},
                                      {"sort_order", "DESCEND"},
                                      {"sort_target", "KEY"},
                                      {"keys_only", true}}
                                     .dump(),
                                 Resend::kRead));
  if (!answer.ok()) return answer.error();
  if (answer->contains("kvs") && (*answer)["kvs"].is_array() && !(*answer)["kvs"].empty())
    return std::optional<EtcdKeyValue>(etcd_detail::keyValue((*answer)["kvs"][0]));
  return std::optional<EtcdKeyValue>();
}

Result<int64_t> EtcdClient::put(const std::string& key, const std::string& value, int64_t lease) {
  json request{{"key", etcd_detail::base64(key)}, {"value", etcd_detail::base64(value)}};
  if (lease != 0) request["lease"] = std::to_string(lease);
  auto answer = parseAnswer(call("/v3/kv/put", request.dump(), Resend::kIfNotProposed));
  if (!answer.ok()) return answer.error();
  return number(answer->value("header", json::object()), "revision");
}

Result<void> EtcdClient::remove(const std::string& key) {
  // Deleting a key twice leaves the same store: safe to send again.
  auto answer = parseAnswer(call(
      "/v3/kv/deleterange", json{{"key", etcd_detail::base64(key)}}.dump(), Resend::kIdempotent));
  if (!answer.ok()) return answer.error();
  return {};
}

Result<bool> EtcdClient::txn(std::vector<EtcdCompare> compares, std::vector<EtcdOp> success,
                             const std::optional<EtcdTxnId>& id) {
  if (id) {
    const bool compared = std::any_of(compares.begin(), compares.end(), [&](const auto& c) {
      return c.target == EtcdCompare::Target::kCreateRevision && c.key == id->key &&
             c.revision == 0;
    });
    if (!compared) compares.push_back({EtcdCompare::Target::kCreateRevision, id->key, 0, ""});
    const bool written = std::any_of(success.begin(), success.end(), [&](const auto& op) {
      return op.kind == EtcdOp::Kind::kPut && op.key == id->key && op.value == id->value;
    });
    if (!written) success.push_back({EtcdOp::Kind::kPut, id->key, id->value, 0});
  }
  json request{{"compare", json::array()}, {"success", json::array()}};
  for (const auto& compare : compares) {
    json c{{"key", etcd_detail::base64(compare.key)}, {"result", "EQUAL"}};
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
        c["value"] = etcd_detail::base64(compare.value);
        break;
    }
    request["compare"].push_back(c);
  }
  for (const auto& op : success) {
    if (op.kind == EtcdOp::Kind::kPut) {
      json put{{"key", etcd_detail::base64(op.key)}, {"value", etcd_detail::base64(op.value)}};
      if (op.lease != 0) put["lease"] = std::to_string(op.lease);
      request["success"].push_back({{"request_put", put}});
    } else {
      request["success"].push_back(
          {{"request_delete_range", {{"key", etcd_detail::base64(op.key)}}}});
    }
  }
  // With an id the transaction applies at most once (it requires its id key to be absent and
  // creates it), so it may be sent again whatever happened to an earlier attempt.
  auto answer = parseAnswer(
      call("/v3/kv/txn", request.dump(), id ? Resend::kIdempotent : Resend::kIfNotProposed));
  if (!answer.ok()) {
    if (!id || answer.error().code != "etcd_unknown_outcome") return answer.error();
    // Every attempt went unanswered: one may have applied, and the id key can tell.
    auto found = get(id->key);
    if (found.ok() && found->first && found->first->value == id->value) return true;
    return answer.error();
  }
  if (answer->value("succeeded", false)) return true;
  if (!id) return false;
  // Either another writer won, or an earlier attempt of this very call applied and its answer
  // was lost: the id key tells which.
  auto found = get(id->key);
  if (!found.ok())
    return Result<bool>::failure("etcd_unknown_outcome",
                                 "the transaction was refused, and whether an earlier attempt "
                                 "applied cannot be read: " +
                                     found.error().message);
  return found->first.has_value() && found->first->value == id->value;
}

Result<int64_t> EtcdClient::grantLease(int64_t ttl_seconds) {
  // A grant sent twice leaves a spare lease that expires on its own: safe to send again.
  auto answer = parseAnswer(call("/v3/lease/grant",
                                 json{{"TTL", std::to_string(ttl_seconds)}, {"ID", "0"}}.dump(),
                                 Resend::kIdempotent));
  if (!answer.ok()) return answer.error();
  const int64_t id = number(*answer, "ID");
  if (id == 0)
    return Result<int64_t>::failure("etcd_refused",
                                    "etcd granted no lease: " + answer->value("error", ""));
  return id;
}

Result<void> EtcdClient::keepAlive(int64_t lease) {
  auto answer = parseAnswer(
      call("/v3/lease/keepalive", json{{"ID", std::to_string(lease)}}.dump(), Resend::kIdempotent));
  if (!answer.ok()) return answer.error();
  const json result = answer->value("result", json::object());
  if (number(result, "TTL") <= 0)
    return Result<void>::failure("lease_expired",
                                 "lease " + std::to_string(lease) + " has expired");
  return {};
}

Result<void> EtcdClient::revokeLease(int64_t lease) {
  auto answer = parseAnswer(
      call("/v3/lease/revoke", json{{"ID", std::to_string(lease)}}.dump(), Resend::kIdempotent));
  if (!answer.ok()) {
    // Revoked already (an earlier attempt, or it expired): the keys are gone either way.
    if (answer.error().message.find("requested lease not found") != std::string::npos) return {};
    return answer.error();
  }
  return {};
}

}  // namespace strangler::common
