#include "strangler/proxy/shadow_comparator.h"

#include <Poco/Net/HTTPClientSession.h>
#include <Poco/Net/HTTPRequest.h>
#include <Poco/Net/HTTPResponse.h>
#include <Poco/Timespan.h>
#include <Poco/URI.h>

#include <unistd.h>

#include <chrono>
#include <iterator>
#include <optional>
#include <variant>

#include "http_util.h"
#include "shadow_replay.h"
#include "strangler/acl/response_translators.h"
#include "strangler/proxy/runtime.h"

namespace strangler::proxy {
namespace {

using nlohmann::json;

bool isRedacted(std::string_view name) {
  return iequals(name, "authorization") || iequals(name, "cookie") ||
         iequals(name, "proxy-authorization") || iequals(name, "set-cookie");
}

json headersJson(const HeaderList& headers) {
  json out = json::object();
  for (const auto& [name, value] : headers)
    out[name] = isRedacted(name) ? std::string("[redacted]") : value;
  return out;
}

json bodyJson(const std::string& body, bool truncated, size_t limit) {
  const bool cut = body.size() > limit;
  return {{"body", cut ? body.substr(0, limit) : body}, {"truncated", truncated || cut}};
}

json sideJson(const CapturedResponse& response, size_t limit) {
  json side = bodyJson(response.body, response.truncated, limit);
  side["status"] = response.status;
  side["headers"] = headersJson(response.headers);
  return side;
}

}  // namespace

size_t ShadowRequest::bytes() const {
  size_t total = method.size() + target_path.size() + monolith_path.size() + query.size() +
                 body.size() + monolith.body.size() + sizeof(ShadowRequest);
  for (const auto& [name, value] : headers)
    total += name.size() + value.size();
  for (const auto& [name, value] : monolith.headers)
    total += name.size() + value.size();
  return total;
}

json ShadowCounters::toJson() const {
  const uint64_t classified = lag + real + unchecked;
  return {{"eligible", eligible},
          {"sampled", sampled},
          {"compared_share", comparedShare()},
          {"compared", compared},
          {"matched", matched},
          {"mismatched", mismatched},
          {"mismatched_by",
           {{"real", real},
            {"lag", lag},
            {"unchecked", unchecked},
            {"pending", mismatched > classified ? mismatched - classified : 0}}},
          {"dropped", dropped},
          {"dropped_by", dropped_by},
          {"too_large", too_large},
          {"unanswered", unanswered},
          {"target_errors", target_errors},
          {"as_bytes", as_bytes},
          {"mismatch_rate", mismatchRate()}};
}

ShadowCounters ShadowCounters::since(const ShadowCounters& earlier) const {
  ShadowCounters out;
  const ShadowCounters& self = *this;
  eachCount(out, self, [&](const char*, uint64_t& into, const uint64_t& now) { into = now; });
  eachCount(out, earlier, [](const char*, uint64_t& into, const uint64_t& before) {
    into = into >= before ? into - before : 0;
  });
  for (const auto& [reason, count] : dropped_by) {
    const auto before = earlier.dropped_by.find(reason);
    const uint64_t was = before == earlier.dropped_by.end() ? 0 : before->second;
    if (count > was) out.dropped_by[reason] = count - was;
  }
  return out;
}

void ShadowCounters::add(const ShadowCounters& more) {
  eachCount(*this, more, [](const char*, uint64_t& into, const uint64_t& other) { into += other; });
  for (const auto& [reason, count] : more.dropped_by)
    dropped_by[reason] += count;
}

json ShadowCounters::toRaw() const {
  json out = json::object();
  const ShadowCounters& self = *this;
  eachCount(self, self,
            [&](const char* name, const uint64_t& value, const uint64_t&) { out[name] = value; });
  out["dropped_by"] = dropped_by;
  return out;
}

ShadowCounters ShadowCounters::fromRaw(const json& raw) {
  ShadowCounters out;
  if (!raw.is_object()) return out;
  eachCount(out, out, [&](const char* name, uint64_t& into, uint64_t&) {
    const auto it = raw.find(name);
    if (it != raw.end() && it->is_number_unsigned()) into = it->get<uint64_t>();
  });
  if (const auto drops = raw.find("dropped_by"); drops != raw.end() && drops->is_object()) {
    for (const auto& [reason, count] : drops->items())
      if (count.is_number_unsigned()) out.dropped_by[reason] = count.get<uint64_t>();
  }
  return out;
}

/// One replay thread's HTTP clients: a kept-alive session per endpoint.
class ShadowComparator::Replayer {
 public:
  explicit Replayer(size_t capture_bytes) : capture_bytes_(capture_bytes) {}

  /// Sends a request to one of `upstream`'s endpoints (round robin); nullopt with `error` set
  /// when no answer came (connect error, timeout, reset).
  std::optional<CapturedResponse> send(const RuntimeUpstream& upstream, const ShadowRequest& job,
                                       const std::string& path, std::string& error) {
    if (upstream.endpoints.empty()) {
      error = "no endpoints";
      return std::nullopt;
    }
    const auto& endpoint = upstream.endpoints[next_++ % upstream.endpoints.size()];
    auto& session = sessions_[endpoint->key];
    const auto timeout = Poco::Timespan(static_cast<long>(upstream.config->timeout_ms) * 1000);
    const auto connect_timeout =
        Poco::Timespan(static_cast<long>(upstream.config->connect_timeout_ms) * 1000);
    // A kept-alive connection may have been closed by the server meanwhile: one retry on a new
    // connection when nothing came back.
    for (int attempt = 0; attempt < 2; ++attempt) {
      if (!session) {
        session = std::make_unique<Poco::Net::HTTPClientSession>(endpoint->address.host,
                                                                 endpoint->address.port);
        session->setKeepAlive(true);
      }
      session->setTimeout(connect_timeout, timeout, timeout);
      const bool reused = session->connected();
      try {
        Poco::Net::HTTPRequest request(job.method, job.has_query ? path + "?" + job.query : path,
                                       Poco::Net::HTTPMessage::HTTP_1_1);
        for (const auto& [name, value] : job.headers) {
          if (!forwardedOnCopy(name)) continue;
          request.add(name, value);
        }
        request.set(kShadowHeader, "1");
        if (!job.body.empty() || job.method == "POST" || job.method == "PUT" ||
            job.method == "PATCH")
          request.setContentLength(static_cast<std::streamsize>(job.body.size()));
        request.setKeepAlive(true);
        session->sendRequest(request) << job.body;
        Poco::Net::HTTPResponse response;
        std::istream& stream = session->receiveResponse(response);
        CapturedResponse captured;
        captured.status = static_cast<int>(response.getStatus());
        for (const auto& [name, value] : response)
          captured.headers.emplace_back(name, value);
        char buffer[16384];
        while (stream) {
          stream.read(buffer, sizeof buffer);
          const auto n = static_cast<size_t>(stream.gcount());
          if (n == 0) break;
          if (captured.body.size() + n > capture_bytes_) {
            captured.truncated = true;
            session.reset();  // the rest is still on the wire
            break;
          }
          captured.body.append(buffer, n);
        }
        if (session && !response.getKeepAlive()) session.reset();
        return captured;
      } catch (const Poco::Exception& e) {
        session.reset();
        error = e.displayText();
        if (!reused) return std::nullopt;
      } catch (const std::exception& e) {
        session.reset();
        error = e.what();
        if (!reused) return std::nullopt;
      }
    }
    return std::nullopt;
  }

  void closeAll() { sessions_.clear(); }

 private:
  size_t capture_bytes_;
  size_t next_ = 0;
  std::map<std::string, std::unique_ptr<Poco::Net::HTTPClientSession>> sessions_;
};

ShadowComparator::ShadowComparator(ShadowLimits limits) : limits_(limits) {
  loop_ = std::make_unique<ShadowReplayLoop>(
      static_cast<size_t>(std::max(1, limits_.concurrency)), limits_.capture_bytes,
      [this] { return take(); },
      [](const ShadowRequest& job,
         const std::vector<ReplayOutcome>& done) -> std::optional<ShadowReplayLoop::Leg> {
        // First the target; then, for the noise filter, the monolith once more (safe requests
        // only: a repeated write would change data) when the target's answer can be compared.
        if (done.empty())
          return ShadowReplayLoop::Leg{job.runtime->upstream(job.route->target), job.target_path};
        const bool noise =
            job.route->shadow && job.route->shadow->noise_filter && isSafe(job.method);
        if (done.size() == 1 && noise && done[0].answer && !done[0].answer->truncated)
          return ShadowReplayLoop::Leg{job.runtime->upstream(job.monolith_upstream),
                                       job.monolith_path};
        return std::nullopt;
      },
      [this](ShadowRequest&& job, std::vector<ReplayOutcome>&& outcomes) {
        compare(std::move(job), std::move(outcomes));
      });
  recheck_thread_ = std::thread([this] { runRechecks(); });
}

ShadowComparator::~ShadowComparator() {
  stop();
}

void ShadowComparator::stop() {
  {
    std::lock_guard lock(offer_mutex_);
    closed_ = true;
    queue_.clear();
    queue_bytes_ = 0;
  }
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
  }
  recheck_wake_.notify_all();
  if (loop_) loop_->stop();
  if (recheck_thread_.joinable()) recheck_thread_.join();
  batch_.clear();
  std::lock_guard lock(mutex_);
  rechecks_.clear();
}

bool ShadowComparator::offer(ShadowRequest request) {
  request.queued_bytes = request.bytes();
  const ShadowConfig* budget = request.route->shadow ? &*request.route->shadow : nullptr;
  {
    std::lock_guard lock(offer_mutex_);
    OfferState& state = offers_[request.route->name];
    ++state.counters.sampled;
    const char* reason = nullptr;
    if (closed_) {
      reason = "stopping";
    } else if (queue_.size() + taken_ >= limits_.queue) {
      reason = "queue_full";
    } else if (queue_bytes_ + taken_bytes_ + request.queued_bytes > limits_.queue_bytes) {
      reason = "queue_bytes";
    } else if (budget != nullptr && budget->max_inflight > 0 &&
               state.inflight >= budget->max_inflight) {
      reason = "max_inflight";
    } else if (budget != nullptr && budget->max_rate > 0) {
      // A token bucket holding one second of copies: bursts up to the rate, then the rate.
      const auto now = std::chrono::steady_clock::now();
      if (state.refilled == std::chrono::steady_clock::time_point{}) {
        state.tokens = budget->max_rate;
      } else {
        state.tokens = std::min(
            budget->max_rate,
            state.tokens +
                budget->max_rate * std::chrono::duration<double>(now - state.refilled).count());
      }
      state.refilled = now;
      if (state.tokens < 1.0) {
        reason = "max_rate";
      } else {
        state.tokens -= 1.0;
      }
    }
    if (reason != nullptr) {
      ++state.counters.dropped;
      ++state.counters.dropped_by[reason];
      return false;
    }
    ++state.inflight;
    queue_bytes_ += request.queued_bytes;
    queue_.push_back(std::move(request));
  }
  // A busy replay loop looks for copies by itself: no system call on the event loop's path.
  loop_->wake();
  return true;
}

void ShadowComparator::tooLarge(const std::string& route) {
  std::lock_guard lock(offer_mutex_);
  auto& counters = offers_[route].counters;
  ++counters.sampled;
  ++counters.too_large;
}

void ShadowComparator::unanswered(const std::string& route) {
  std::lock_guard lock(offer_mutex_);
  auto& counters = offers_[route].counters;
  ++counters.sampled;
  ++counters.unanswered;
}

ShadowCounters ShadowComparator::counters(const std::string& route) const {
  ShadowCounters out;
  {
    std::lock_guard lock(mutex_);
    if (const auto it = routes_.find(route); it != routes_.end()) out = it->second.counters;
  }
  std::lock_guard lock(offer_mutex_);
  if (const auto it = offers_.find(route); it != offers_.end()) {
    const ShadowCounters& offered = it->second.counters;
    out.sampled = offered.sampled;
    out.dropped = offered.dropped;
    out.dropped_by = offered.dropped_by;
    out.too_large += offered.too_large;
    out.unanswered = offered.unanswered;
  }
  return out;
}

json ShadowComparator::diffs(const std::string& route) const {
  std::lock_guard lock(mutex_);
  json out = json::array();
  const auto it = routes_.find(route);
  if (it == routes_.end()) return out;
  for (const auto& diff : it->second.diffs)
    out.push_back(diff);
  return out;
}

size_t ShadowComparator::queued() const {
  std::lock_guard lock(offer_mutex_);
  return queue_.size() + taken_;
}

std::optional<ShadowRequest> ShadowComparator::take() {
  const auto now = std::chrono::steady_clock::now();
  if (batch_.empty() && now - last_swap_ >= std::chrono::milliseconds(1)) {
    // One short critical section, at most every millisecond, for everything queued since the
    // last one and for the copies finished since (their route's in-flight budget).
    last_swap_ = now;
    std::lock_guard lock(offer_mutex_);
    for (const auto& [route, count] : finished_)
      offers_[route].inflight -= count;
    finished_.clear();
    if (closed_) return std::nullopt;
    batch_.swap(queue_);
    taken_ = batch_.size();
    taken_bytes_ = queue_bytes_;
    queue_bytes_ = 0;
  }
  if (batch_.empty()) return std::nullopt;
  std::optional<ShadowRequest> job(std::move(batch_.front()));
  batch_.pop_front();
  return job;
}

namespace {

/// The target's answer as compared (translated through the route's ACL) and how it differs.
struct Judgement {
  CapturedResponse compared;
  std::vector<std::string> differences;
  bool as_bytes = false;
};

Judgement judge(const ShadowConfig& settings, const CapturedResponse& monolith,
                const CapturedResponse& target, const std::vector<std::string>& noise) {
  Judgement out{target, {}, false};
  if (!settings.acl.empty()) {
    // The target speaks its own model: translate its answer to the legacy shape first.
    const auto translator = acl::responseTranslator(settings.acl);
    const json body = json::parse(target.body, nullptr, /*allow_exceptions=*/false);
    if (!translator) {
      out.differences.push_back("acl: no translator named '" + settings.acl + "'");
    } else if (body.is_discarded()) {
      out.differences.push_back("acl: the target's body is not JSON");
      out.as_bytes = true;
    } else if (auto translated = (*translator)(target.status, body); !translated) {
      out.differences.push_back("acl: " + translated.error().message);
    } else {
      out.compared.body = translated->dump();
    }
    if (!out.differences.empty()) return out;
  }
  out.differences =
      compareResponses(monolith, out.compared, CompareOptions{settings.ignore, settings.headers},
                       noise, &out.as_bytes);
  return out;
}

}  // namespace

void ShadowComparator::compare(ShadowRequest&& job, std::vector<ReplayOutcome>&& outcomes) {
  const std::string route_name = job.route->name;
  const ReplayOutcome& target = outcomes.front();
  if (!target.answer) {
    CapturedResponse failed;
    failed.body = target.error;
    record(std::move(job), failed, {"target_error"}, true, false);
  } else if (target.answer->truncated) {
    std::lock_guard lock(mutex_);
    ++routes_[route_name].counters.too_large;
  } else {
    const ShadowConfig settings = job.route->shadow.value_or(ShadowConfig{});
    // The noise filter's second answer of the monolith: what differs between its two answers
    // is ignored.
    std::vector<std::string> noise;
    if (outcomes.size() > 1 && outcomes[1].answer && !outcomes[1].answer->truncated)
      noise =
          compareResponses(job.monolith, *outcomes[1].answer, CompareOptions{{}, settings.headers});
    auto verdict = judge(settings, job.monolith, *target.answer, noise);
    record(std::move(job), verdict.compared, verdict.differences, target.answer->status >= 500,
           verdict.as_bytes);
  }
  ++finished_[route_name];  // applied at the next take(): no lock here
}

void ShadowComparator::record(ShadowRequest&& job, const CapturedResponse& target,
                              const std::vector<std::string>& differences, bool target_error,
                              bool as_bytes) {
  const bool transport_error = target.status == 0;  // nothing to compare
  if (transport_error || differences.empty()) {
    std::lock_guard lock(mutex_);
    auto& counters = routes_[job.route->name].counters;
    if (target_error) ++counters.target_errors;
    if (transport_error) return;
    ++counters.compared;
    ++counters.matched;
    if (as_bytes) ++counters.as_bytes;
    return;
  }
  const size_t limit = limits_.diff_body_bytes;
  json request = bodyJson(job.body, false, limit);
  request["headers"] = headersJson(job.headers);
  json entry = {{"time_ms", std::chrono::duration_cast<std::chrono::milliseconds>(
                                std::chrono::system_clock::now().time_since_epoch())
                                .count()},
                {"method", job.method},
                {"path", job.monolith_path},
                {"query", job.has_query ? json(job.query) : json(nullptr)},
                {"target_path", job.target_path},
                {"differences", differences},
                {"request", std::move(request)},
                {"monolith", sideJson(job.monolith, limit)},
                {"target", sideJson(target, limit)}};
  // Only a route whose target reads a synced copy can lag; elsewhere a mismatch is real.
  const RouteConfig& route = *job.route;
  const std::string& sync_url = job.runtime->config->admin.sync_status_url;
  const char* klass = route.data.empty() ? "real" : sync_url.empty() ? "unchecked" : "pending";
  if (std::string_view(klass) == "unchecked")
    entry["note"] = "no admin.sync_status_url: the sync could not be asked to catch up";
  std::unique_lock lock(mutex_);
  auto& state = routes_[route.name];
  if (target_error) ++state.counters.target_errors;
  ++state.counters.compared;
  ++state.counters.mismatched;
  if (as_bytes) ++state.counters.as_bytes;
  const uint64_t id = next_diff_id_++;
  if (std::string_view(klass) == "pending" &&
      (stopping_ || rechecks_.size() >= limits_.recheck_queue)) {
    klass = "unchecked";
    entry["note"] = "too many mismatches waiting for a re-check";
  }
  if (std::string_view(klass) == "real") ++state.counters.real;
  if (std::string_view(klass) == "unchecked") ++state.counters.unchecked;
  entry["id"] = id;
  entry["class"] = klass;
  state.diffs.push_front(std::move(entry));
  while (state.diffs.size() > limits_.max_diffs)
    state.diffs.pop_back();
  if (std::string_view(klass) == "pending") {
    rechecks_.push_back(Recheck{std::move(job), id, std::nullopt});
    lock.unlock();
    recheck_wake_.notify_one();
  }
}

void ShadowComparator::classify(const std::string& route, uint64_t id, const char* klass,
                                json detail) {
  std::lock_guard lock(mutex_);
  auto& state = routes_[route];
  const std::string_view k(klass);
  if (k == "lag") ++state.counters.lag;
  if (k == "real") ++state.counters.real;
  if (k == "unchecked") ++state.counters.unchecked;
  for (auto& entry : state.diffs) {
    if (entry.value("id", uint64_t{0}) != id) continue;
    entry["class"] = klass;
    entry["recheck"] = std::move(detail);
    break;
  }
}

bool ShadowComparator::pause(int ms) {
  std::unique_lock lock(mutex_);
  recheck_wake_.wait_for(lock, std::chrono::milliseconds(ms), [this] { return stopping_; });
  return !stopping_;
}

void ShadowComparator::runRechecks() {
  // At normal priority: it mostly sleeps, and takes mutex_ (which /routes and /diffs need too):
  // a thread starved by a lower priority while holding it would stall them.
  Replayer replayer(limits_.capture_bytes);
  for (;;) {
    std::vector<Recheck> batch;
    {
      std::unique_lock lock(mutex_);
      recheck_wake_.wait(lock, [this] { return stopping_ || !rechecks_.empty(); });
      if (stopping_) return;
      // One catch-up wait serves every mismatch found meanwhile.
      while (!rechecks_.empty() && batch.size() < 64) {
        batch.push_back(std::move(rechecks_.front()));
        rechecks_.pop_front();
      }
    }
    recheckBatch(batch, replayer);
    // Not kept alive between batches: a thread-per-connection server would keep a thread
    // parked on each idle connection.
    replayer.closeAll();
  }
}

namespace {

/// A GET on the sync's status server; the JSON answer or an error message.
std::variant<json, std::string> askSync(const std::string& status_url, const std::string& what,
                                        const std::string& query) {
  try {
    const Poco::URI uri(status_url);
    std::string path = uri.getPath();
    path = path.substr(0, path.rfind('/') == std::string::npos ? 0 : path.rfind('/')) + "/" + what;
    Poco::Net::HTTPClientSession session(uri.getHost(), uri.getPort());
    session.setTimeout(Poco::Timespan(2, 0));
    Poco::Net::HTTPRequest request(Poco::Net::HTTPRequest::HTTP_GET,
                                   query.empty() ? path : path + "?" + query,
                                   Poco::Net::HTTPMessage::HTTP_1_1);
    session.sendRequest(request);
    Poco::Net::HTTPResponse response;
    std::istream& in = session.receiveResponse(response);
    std::string body((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    json answer = json::parse(body, nullptr, /*allow_exceptions=*/false);
    if (response.getStatus() != Poco::Net::HTTPResponse::HTTP_OK || !answer.is_object())
      return "the sync at " + status_url + " answered " + std::to_string(response.getStatus()) +
             " to GET " + path;
    return answer;
  } catch (const Poco::Exception& e) {
    return "cannot ask the sync at " + status_url + ": " + e.displayText();
  }
}

std::string queryEscape(const std::string& value) {
  std::string out;
  Poco::URI::encode(value, "&=+?#/ ", out);
  return out;
}

}  // namespace

void ShadowComparator::recheckBatch(std::vector<Recheck>& batch, Replayer& replayer) {
  const auto started = std::chrono::steady_clock::now();
  const auto fail = [&](const std::string& why) {
    for (auto& r : batch)
      classify(r.job.route->name, r.id, "unchecked", {{"note", why}});
  };
  // The sync named by the first job's config (a reload meanwhile may name another: each batch
  // asks the one its first job was routed with).
  const std::string sync_url = batch.front().job.runtime->config->admin.sync_status_url;

  // A route no longer shadowed, or held by a cutover, is not re-checked (the batch's routes
  // share one sync: the first one's answer stands for all).
  const auto blocked = [&]() -> std::string {
    return recheck_guard_ ? recheck_guard_(batch.front().job.route->name) : std::string();
  };
  if (auto why = blocked(); !why.empty()) return fail(why);
  // 1. The monolith again: its state now, which the sync must then catch up with.
  for (auto& r : batch) {
    std::string error;
    if (const auto* monolith = r.job.runtime->upstream(r.job.monolith_upstream))
      r.monolith_again = replayer.send(*monolith, r.job, r.job.monolith_path, error);
  }
  // 2. The end of both change logs now: every change the monolith's second answers saw.
  auto fence = askSync(sync_url, "positions", "");
  if (auto* why = std::get_if<std::string>(&fence)) return fail(*why);
  const json positions = std::get<json>(fence);
  const std::string mapping = positions.value("mapping", "");
  // 3. Wait until the sync has applied everything up to there.
  const std::string query = "monolith=" + queryEscape(positions.value("monolith", "")) +
                            "&service=" + queryEscape(positions.value("service", ""));
  const auto deadline = started + std::chrono::milliseconds(limits_.recheck_timeout_ms);
  json backlog;
  for (;;) {
    auto answer = askSync(sync_url, "backlog", query);
    if (auto* why = std::get_if<std::string>(&answer)) return fail(*why);
    backlog = std::get<json>(answer);
    if (backlog.value("caught_up", false)) break;
    if (auto why = blocked(); !why.empty()) return fail(why);
    if (std::chrono::steady_clock::now() >= deadline)
      return fail("the sync did not catch up within " + std::to_string(limits_.recheck_timeout_ms) +
                  " ms (" + std::to_string(backlog.value("forward", 0)) + " monolith and " +
                  std::to_string(backlog.value("reverse", 0)) + " service changes left)");
    if (!pause(50)) return;
  }
  const auto waited_ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                             std::chrono::steady_clock::now() - started)
                             .count();
  // 4. The target again, compared with the monolith's second answer, or a third one when a
  // write landed in between.
  for (auto& r : batch) {
    const RouteConfig& route = *r.job.route;
    json detail = {{"waited_ms", waited_ms},
                   {"fence",
                    {{"monolith", positions.value("monolith", "")},
                     {"service", positions.value("service", "")}}}};
    if (mapping != route.data) {
      detail["note"] =
          "the sync at " + sync_url + " copies mapping '" + mapping + "', not '" + route.data + "'";
      classify(route.name, r.id, "unchecked", std::move(detail));
      continue;
    }
    std::string error;
    const auto* target = r.job.runtime->upstream(route.target);
    auto target_again =
        target != nullptr ? replayer.send(*target, r.job, r.job.target_path, error) : std::nullopt;
    if (!r.monolith_again || r.monolith_again->truncated || !target_again ||
        target_again->truncated) {
      detail["note"] = "a side did not answer the re-check" + (error.empty() ? "" : ": " + error);
      classify(route.name, r.id, "unchecked", std::move(detail));
      continue;
    }
    const ShadowConfig settings = route.shadow.value_or(ShadowConfig{});
    auto after = judge(settings, *r.monolith_again, *target_again, {});
    if (!after.differences.empty()) {
      const auto* monolith = r.job.runtime->upstream(r.job.monolith_upstream);
      if (auto third = monolith != nullptr
                           ? replayer.send(*monolith, r.job, r.job.monolith_path, error)
                           : std::nullopt;
          third && !third->truncated) {
        if (auto again = judge(settings, *third, *target_again, {}); again.differences.empty())
          after = std::move(again);
      }
    }
    detail["differences_after_catch_up"] = after.differences;
    classify(route.name, r.id, after.differences.empty() ? "lag" : "real", std::move(detail));
  }
}

}  // namespace strangler::proxy
