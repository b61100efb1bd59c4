#include "strangler/proxy/shadow_comparator.h"

#include <Poco/Net/HTTPClientSession.h>
#include <Poco/Net/HTTPRequest.h>
#include <Poco/Net/HTTPResponse.h>
#include <Poco/Timespan.h>

#include <pthread.h>
#include <sched.h>
#include <sys/resource.h>
#include <unistd.h>

#include <chrono>
#include <optional>

#include "http_util.h"
#include "strangler/acl/response_translators.h"
#include "strangler/proxy/runtime.h"

namespace strangler::proxy {
namespace {

using nlohmann::json;

constexpr const char* kShadowHeader = "X-Strangler-Shadow";

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
  return {{"eligible", eligible},
          {"compared_share",
           eligible == 0 ? 0.0 : static_cast<double>(compared) / static_cast<double>(eligible)},
          {"compared", compared},
          {"matched", matched},
          {"mismatched", mismatched},
          {"dropped", dropped},
          {"dropped_by", dropped_by},
          {"too_large", too_large},
          {"target_errors", target_errors},
          {"mismatch_rate", mismatchRate()}};
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
          if (isHopByHop(name) || iequals(name, "content-length") ||
              startsWithIgnoreCase(name, "x-strangler-"))
            continue;
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

 private:
  size_t capture_bytes_;
  size_t next_ = 0;
  std::map<std::string, std::unique_ptr<Poco::Net::HTTPClientSession>> sessions_;
};

ShadowComparator::ShadowComparator(ShadowLimits limits) : limits_(limits) {
  const int threads = std::max(1, limits_.concurrency);
  for (int i = 0; i < threads; ++i)
    threads_.emplace_back([this] { run(); });
}

ShadowComparator::~ShadowComparator() {
  stop();
}

void ShadowComparator::stop() {
  {
    std::lock_guard lock(mutex_);
    if (stopping_ && threads_.empty()) return;
    stopping_ = true;
    queue_.clear();
    queue_bytes_ = 0;
  }
  wake_.notify_all();
  for (auto& thread : threads_) {
    if (thread.joinable()) thread.join();
  }
  threads_.clear();
}

bool ShadowComparator::offer(ShadowRequest request) {
  request.queued_bytes = request.bytes();
  const ShadowConfig* budget = request.route->shadow ? &*request.route->shadow : nullptr;
  {
    std::lock_guard lock(mutex_);
    RouteState& state = routes_[request.route->name];
    const char* reason = nullptr;
    if (stopping_) {
      reason = "stopping";
    } else if (queue_.size() >= limits_.queue) {
      reason = "queue_full";
    } else if (queue_bytes_ + request.queued_bytes > limits_.queue_bytes) {
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
    // Busy replayers take the next copy without a wake-up: no futex call on the loop's path.
    if (idle_ == 0) return true;
  }
  wake_.notify_one();
  return true;
}

void ShadowComparator::tooLarge(const std::string& route) {
  std::lock_guard lock(mutex_);
  ++routes_[route].counters.too_large;
}

ShadowCounters ShadowComparator::counters(const std::string& route) const {
  std::lock_guard lock(mutex_);
  const auto it = routes_.find(route);
  return it == routes_.end() ? ShadowCounters{} : it->second.counters;
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
  std::lock_guard lock(mutex_);
  return queue_.size();
}

void ShadowComparator::run() {
  // Replays yield the CPU to the event loops: SCHED_IDLE runs them only when a core would
  // otherwise idle, and any waking loop preempts them at once. Under saturation the shadow side
  // falls behind and drops copies (counted) rather than taking cycles from live traffic.
  sched_param param{};
  if (pthread_setschedparam(pthread_self(), SCHED_IDLE, &param) != 0)
    ::setpriority(PRIO_PROCESS, static_cast<id_t>(::gettid()), 19);
  Replayer replayer(limits_.capture_bytes);
  for (;;) {
    std::optional<ShadowRequest> job;
    {
      std::unique_lock lock(mutex_);
      ++idle_;
      wake_.wait(lock, [this] { return stopping_ || !queue_.empty(); });
      --idle_;
      if (stopping_) return;
      job.emplace(std::move(queue_.front()));
      queue_.pop_front();
      queue_bytes_ -= std::min(queue_bytes_, job->queued_bytes);
    }
    process(*job, replayer);
    std::lock_guard lock(mutex_);
    --routes_[job->route->name].inflight;
  }
}

void ShadowComparator::process(ShadowRequest& job, Replayer& replayer) {
  const RouteConfig& route = *job.route;
  const RuntimeUpstream* target = job.runtime->upstream(route.target);
  std::string error;
  std::optional<CapturedResponse> answer;
  if (target == nullptr) {
    error = "upstream '" + route.target + "' is not defined";
  } else {
    answer = replayer.send(*target, job, job.target_path, error);
  }
  if (!answer) {
    CapturedResponse failed;
    failed.body = error;
    record(job, failed, {"target_error"}, true);
    return;
  }
  if (answer->truncated) {
    tooLarge(route.name);
    return;
  }
  const ShadowConfig settings = route.shadow.value_or(ShadowConfig{});
  CompareOptions options;
  options.ignore = settings.ignore;
  options.headers = settings.headers;

  // The noise filter asks the monolith a second time (idempotent requests only: a repeated
  // write would change data) and ignores whatever differs between its two answers.
  std::vector<std::string> noise;
  if (settings.noise_filter && isSafe(job.method)) {
    if (const RuntimeUpstream* monolith = job.runtime->upstream(job.monolith_upstream)) {
      std::string ignored;
      if (auto again = replayer.send(*monolith, job, job.monolith_path, ignored);
          again && !again->truncated) {
        noise = compareResponses(job.monolith, *again, CompareOptions{{}, settings.headers});
      }
    }
  }

  CapturedResponse compared = *answer;
  std::vector<std::string> differences;
  if (!settings.acl.empty()) {
    // The target speaks its own model: translate its answer to the legacy shape first.
    const auto translator = acl::responseTranslator(settings.acl);
    const json body = json::parse(answer->body, nullptr, /*allow_exceptions=*/false);
    if (!translator) {
      differences.push_back("acl: no translator named '" + settings.acl + "'");
    } else if (body.is_discarded()) {
      differences.push_back("acl: the target's body is not JSON");
    } else if (auto translated = (*translator)(answer->status, body); !translated) {
      differences.push_back("acl: " + translated.error().message);
    } else {
      compared.body = translated->dump();
    }
  }
  if (differences.empty()) differences = compareResponses(job.monolith, compared, options, noise);
  record(job, compared, differences, answer->status >= 500);
}

void ShadowComparator::record(const ShadowRequest& job, const CapturedResponse& target,
                              const std::vector<std::string>& differences, bool target_error) {
  const bool transport_error = target.status == 0;  // nothing to compare
  if (transport_error || differences.empty()) {
    std::lock_guard lock(mutex_);
    auto& counters = routes_[job.route->name].counters;
    if (target_error) ++counters.target_errors;
    if (transport_error) return;
    ++counters.compared;
    ++counters.matched;
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
  std::lock_guard lock(mutex_);
  auto& state = routes_[job.route->name];
  if (target_error) ++state.counters.target_errors;
  ++state.counters.compared;
  ++state.counters.mismatched;
  state.diffs.push_front(std::move(entry));
  while (state.diffs.size() > limits_.max_diffs)
    state.diffs.pop_back();
}

}  // namespace strangler::proxy
