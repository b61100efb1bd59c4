#include "strangler/proxy/admin_server.h"

#include <Poco/Net/HTTPClientSession.h>
#include <Poco/Net/HTTPRequest.h>
#include <Poco/Net/HTTPRequestHandler.h>
#include <Poco/Net/HTTPRequestHandlerFactory.h>
#include <Poco/Net/HTTPServer.h>
#include <Poco/Net/HTTPServerParams.h>
#include <Poco/Net/HTTPServerRequest.h>
#include <Poco/Net/HTTPServerResponse.h>
#include <Poco/Net/ServerSocket.h>
#include <Poco/Net/SocketAddress.h>
#include <Poco/URI.h>

#include <chrono>
#include <sstream>

#include <nlohmann/json.hpp>

#include "dashboard_html.h"
#include "strangler/proxy/proxy_app.h"
#include "strangler/proxy/replica_set.h"

namespace strangler::proxy {
namespace {

using Poco::Net::HTTPResponse;
using Poco::Net::HTTPServerRequest;
using Poco::Net::HTTPServerResponse;

std::string label(const std::string& value) {
  std::string out;
  for (const char c : value) {
    if (c == '\\' || c == '"') out += '\\';
    if (c == '\n') {
      out += "\\n";
      continue;
    }
    out += c;
  }
  return out;
}

// Compares without an early exit so response time does not leak how much of a token matched.
bool sameToken(const std::string& a, const std::string& b) {
  unsigned char diff = a.size() == b.size() ? 0 : 1;
  for (size_t i = 0; i < a.size(); ++i)
    diff |= static_cast<unsigned char>(a[i] ^ b[i % (b.empty() ? 1 : b.size())]);
  return diff == 0 && !b.empty();
}

void send(HTTPServerResponse& response, HTTPResponse::HTTPStatus status, const std::string& type,
          const std::string& body) {
  response.setStatus(status);
  response.setContentType(type);
  response.setContentLength(static_cast<std::streamsize>(body.size()));
  response.set("Cache-Control", "no-store");
  response.send() << body;
}

void sendJson(HTTPServerResponse& response, HTTPResponse::HTTPStatus status,
              const nlohmann::json& body) {
  send(response, status, "application/json", body.dump(2) + "\n");
}

struct RouteCounters {
  uint64_t requests = 0;
  uint64_t to_target = 0;
  uint64_t to_monolith = 0;
  uint64_t errors = 0;  // 5xx answered to clients
  uint64_t fallbacks = 0;
};

std::map<std::string, RouteCounters> countersByRoute(ProxyApp& app, const Runtime& runtime) {
  std::map<std::string, RouteCounters> counters;
  const auto totals = app.shared().metrics.totals();
  for (const auto& [key, series] : totals.series) {
    const auto& [route, upstream] = key;
    auto& counter = counters[route];
    const auto* config = runtime.config->findRoute(route);
    for (const auto& [status, count] : series.by_status) {
      counter.requests += count;
      if (status >= 500) counter.errors += count;
      if (config != nullptr && upstream == config->target &&
          upstream != runtime.config->default_upstream) {
        counter.to_target += count;
      } else if (upstream == runtime.config->default_upstream) {
        counter.to_monolith += count;
      }
    }
  }
  for (const auto& [key, count] : totals.fallbacks)
    counters[key.first].fallbacks += count;
  return counters;
}

constexpr auto kSyncStatusTimeout = std::chrono::milliseconds(500);
constexpr std::streamsize kSyncStatusMaxBytes = 1 << 20;

// GET /sync: the data sync's live figures, fetched from `admin.sync_status_url` (a `strangler
// sync watch --status-listen` endpoint) so the dashboard needs no second origin.
nlohmann::json fetchSyncStatus(const std::string& url) {
  if (url.empty()) return {{"configured", false}};
  nlohmann::json out = {{"configured", true}, {"url", url}};
  const auto unreachable = [&](const std::string& why) {
    out["reachable"] = false;
    out["error"] = why;
    return out;
  };
  try {
    const Poco::URI uri(url);
    Poco::Net::HTTPClientSession session(uri.getHost(), uri.getPort());
    const Poco::Timespan timeout(
        std::chrono::duration_cast<std::chrono::microseconds>(kSyncStatusTimeout).count());
    session.setTimeout(timeout, timeout, timeout);
    Poco::Net::HTTPRequest request(Poco::Net::HTTPRequest::HTTP_GET, uri.getPathAndQuery(),
                                   Poco::Net::HTTPMessage::HTTP_1_1);
    request.set("Accept", "application/json");
    session.sendRequest(request);
    HTTPResponse answer;
    std::istream& in = session.receiveResponse(answer);
    std::string body(static_cast<size_t>(kSyncStatusMaxBytes), '\0');
    in.read(body.data(), kSyncStatusMaxBytes);
    body.resize(static_cast<size_t>(in.gcount()));
    if (answer.getStatus() != HTTPResponse::HTTP_OK)
      return unreachable("answered " + std::to_string(static_cast<int>(answer.getStatus())));
    auto status = nlohmann::json::parse(body, nullptr, /*allow_exceptions=*/false);
    if (status.is_discarded() || !status.is_object())
      return unreachable("answered something that is not a JSON object");
    out["reachable"] = true;
    out["status"] = std::move(status);
    return out;
  } catch (const Poco::Exception& error) {
    return unreachable(error.displayText());
  } catch (const std::exception& error) {
    return unreachable(error.what());
  }
}

constexpr int64_t kDefaultHoldMs = 5000;
constexpr int64_t kMaxHoldMs = 60000;
constexpr std::streamsize kMaxHoldBodyBytes = 64 * 1024;
// How long DELETE /routes/NAME/hold waits for the loops to let the parked requests go, so that
// max_held_ms includes them (the loops are woken at once; this is only a bound).
constexpr auto kReleaseDrain = std::chrono::milliseconds(1000);

// The hold time a POST /routes/NAME/hold body asks for: {"hold_ms": N}, or nothing.
common::Result<int64_t> parseHoldBody(const std::string& body) {
  using R = common::Result<int64_t>;
  if (body.find_first_not_of(" \t\r\n") == std::string::npos) return kDefaultHoldMs;
  const auto doc = nlohmann::json::parse(body, nullptr, /*allow_exceptions=*/false);
  if (doc.is_discarded() || !doc.is_object())
    return R::failure("bad_request", "the body must be a JSON object like {\"hold_ms\": 5000}");
  for (const auto& item : doc.items()) {
    if (item.key() != "hold_ms") return R::failure("bad_request", item.key() + ": unknown key");
  }
  if (!doc.contains("hold_ms")) return kDefaultHoldMs;
  const auto& value = doc["hold_ms"];
  if (!value.is_number_integer() || value.get<int64_t>() < 1 || value.get<int64_t>() > kMaxHoldMs) {
    return R::failure("bad_request", "hold_ms: " + value.dump() + " is not an integer in 1.." +
                                         std::to_string(kMaxHoldMs));
  }
  return value.get<int64_t>();
}

class AdminHandler : public Poco::Net::HTTPRequestHandler {
 public:
  explicit AdminHandler(ProxyApp& app) : app_(app) {}

  void handleRequest(HTTPServerRequest& request, HTTPServerResponse& response) override {
    try {
      route(request, response);
    } catch (const std::exception& error) {
      if (!response.sent()) {
        sendJson(response, HTTPResponse::HTTP_INTERNAL_SERVER_ERROR,
                 {{"error", "internal"}, {"message", error.what()}});
      }
    }
  }

 private:
  void route(HTTPServerRequest& request, HTTPServerResponse& response) {
    const std::string path = request.getURI().substr(0, request.getURI().find('?'));
    const std::string& method = request.getMethod();
    if (const std::string prefix = "/routes/", suffix = "/hold";
        path.size() > prefix.size() + suffix.size() &&
        path.compare(0, prefix.size(), prefix) == 0 &&
        path.compare(path.size() - suffix.size(), suffix.size(), suffix) == 0) {
      std::string name;
      Poco::URI::decode(path.substr(prefix.size(), path.size() - prefix.size() - suffix.size()),
                        name);
      return hold(request, response, name);
    }
    if (path == "/reload") {
      if (method != "POST") return methodNotAllowed(response, "POST");
      if (!authorized(request, response)) return;
      auto version = app_.reload();
      if (!version) {
        nlohmann::json errors = nlohmann::json::array();
        std::istringstream lines(version.error().message);
        for (std::string line; std::getline(lines, line);)
          errors.push_back(line);
        return sendJson(response, HTTPResponse::HTTP_BAD_REQUEST,
                        {{"error", version.error().code},
                         {"errors", errors},
                         {"version", app_.current()->version},
                         {"message", "config rejected; the previous config keeps serving"}});
      }
      return sendJson(response, HTTPResponse::HTTP_OK,
                      {{"version", *version}, {"config_hash", app_.current()->config->hash}});
    }
    if (method != "GET" && method != "HEAD") return methodNotAllowed(response, "GET");
    if (path == "/healthz") {
      return sendJson(response, HTTPResponse::HTTP_OK,
                      {{"status", "serving"}, {"version", app_.current()->version}});
    }
    if (path == "/routes") {
      // ?scope=self: this replica's figures alone (by default, every live replica's summed).
      const bool self_only = request.getURI().find("scope=self") != std::string::npos;
      return send(response, HTTPResponse::HTTP_OK, "application/json",
                  renderRoutes(app_, !self_only));
    }
    if (path == "/diffs") return diffs(request, response);
    if (path == "/replicas") {
      const auto* replicas = app_.replicas();
      return sendJson(response, HTTPResponse::HTTP_OK,
                      {{"self", nlohmann::json::parse(app_.replicaDocument())},
                       {"replicas", app_.replicaDocuments()},
                       {"decider", replicas ? nlohmann::json(replicas->decider()) : nullptr}});
    }
    if (path == "/figures")
      return sendJson(response, HTTPResponse::HTTP_OK, app_.figuresDocument());
    if (path == "/metrics") {
      return send(response, HTTPResponse::HTTP_OK, "text/plain; version=0.0.4; charset=utf-8",
                  renderMetrics(app_));
    }
    if (path == "/sync") {
      return sendJson(response, HTTPResponse::HTTP_OK,
                      fetchSyncStatus(app_.current()->config->admin.sync_status_url));
    }
    if (path == "/") {
      return send(response, HTTPResponse::HTTP_OK, "text/html; charset=utf-8",
                  std::string(dashboardHtml()));
    }
    sendJson(response, HTTPResponse::HTTP_NOT_FOUND,
             {{"error", "not_found"}, {"message", path + " is not an admin endpoint"}});
  }

  // GET /diffs?route=NAME: the route's latest mismatches; without route=, every route's.
  void diffs(HTTPServerRequest& request, HTTPServerResponse& response) {
    const Poco::URI uri(request.getURI());
    std::string wanted;
    for (const auto& [key, value] : uri.getQueryParameters()) {
      if (key == "route") wanted = value;
    }
    const auto runtime = app_.current();
    if (!wanted.empty()) {
      if (runtime->config->findRoute(wanted) == nullptr) {
        return sendJson(
            response, HTTPResponse::HTTP_NOT_FOUND,
            {{"error", "unknown_route"}, {"message", "no route named '" + wanted + "'"}});
      }
      auto counters = app_.shared().shadow->counters(wanted);
      const auto totals = app_.shared().metrics.totals();
      if (const auto eligible = totals.shadow_eligible.find(wanted);
          eligible != totals.shadow_eligible.end())
        counters.eligible = eligible->second;
      return sendJson(response, HTTPResponse::HTTP_OK,
                      {{"route", wanted},
                       {"counters", counters.toJson()},
                       {"diffs", app_.shared().shadow->diffs(wanted)}});
    }
    nlohmann::json all = nlohmann::json::object();
    const auto totals = app_.shared().metrics.totals();
    for (const auto& route : runtime->config->routes) {
      if (route.target.empty()) continue;
      auto counters = app_.shared().shadow->counters(route.name);
      if (const auto eligible = totals.shadow_eligible.find(route.name);
          eligible != totals.shadow_eligible.end())
        counters.eligible = eligible->second;
      all[route.name] = {{"counters", counters.toJson()},
                         {"diffs", app_.shared().shadow->diffs(route.name)}};
    }
    sendJson(response, HTTPResponse::HTTP_OK, {{"routes", all}});
  }

  // POST, GET and DELETE /routes/NAME/hold: the write hold of a fenced cutover.
  void hold(HTTPServerRequest& request, HTTPServerResponse& response, const std::string& name) {
    const std::string& method = request.getMethod();
    const bool read = method == "GET" || method == "HEAD";
    if (!read && method != "POST" && method != "DELETE")
      return methodNotAllowed(response, "GET, POST, DELETE");
    if (!read && !authorized(request, response)) return;
    auto& holds = app_.holds();
    const auto now = RouteHold::Clock::now();
    // A route the config no longer has can still be looked at and released while held.
    RouteHold* known = holds.find(name);
    if (app_.current()->config->findRoute(name) == nullptr &&
        (known == nullptr || !known->activeAt(now))) {
      return sendJson(response, HTTPResponse::HTTP_NOT_FOUND,
                      {{"error", "unknown_route"}, {"message", "no route named '" + name + "'"}});
    }
    if (method == "POST") {
      std::string body(static_cast<size_t>(kMaxHoldBodyBytes) + 1, '\0');
      request.stream().read(body.data(), kMaxHoldBodyBytes + 1);
      body.resize(static_cast<size_t>(request.stream().gcount()));
      if (body.size() > static_cast<size_t>(kMaxHoldBodyBytes)) {
        return sendJson(response, HTTPResponse::HTTP_BAD_REQUEST,
                        {{"error", "bad_request"}, {"message", "the body is too large"}});
      }
      const auto hold_ms = parseHoldBody(body);
      if (!hold_ms) {
        return sendJson(response, HTTPResponse::HTTP_BAD_REQUEST,
                        {{"error", hold_ms.error().code}, {"message", hold_ms.error().message}});
      }
      const auto status = holds.hold(name, std::chrono::milliseconds(*hold_ms));
      return sendJson(response, HTTPResponse::HTTP_OK,
                      {{"route", name},
                       {"held", status.held},
                       {"expires_in_ms", status.expires_in_ms},
                       {"in_flight_unsafe", status.in_flight_unsafe}});
    }
    if (method == "DELETE") {
      const auto released = holds.release(name, kReleaseDrain);
      return sendJson(response, HTTPResponse::HTTP_OK,
                      {{"route", name},
                       {"released", released.released},
                       {"max_held_ms", released.max_held_ms}});
    }
    const auto status = holds.get(name).status(now);
    sendJson(response, HTTPResponse::HTTP_OK,
             {{"route", name},
              {"held", status.held},
              {"expires_in_ms", status.expires_in_ms},
              {"in_flight_unsafe", status.in_flight_unsafe},
              {"waiting", status.waiting}});
  }

  void methodNotAllowed(HTTPServerResponse& response, const std::string& allow) {
    response.set("Allow", allow);
    sendJson(response, HTTPResponse::HTTP_METHOD_NOT_ALLOWED, {{"error", "method_not_allowed"}});
  }

  bool authorized(HTTPServerRequest& request, HTTPServerResponse& response) {
    const std::string token = app_.adminToken();
    if (token.empty()) {
      sendJson(response, HTTPResponse::HTTP_FORBIDDEN,
               {{"error", "no_admin_token"},
                {"message",
                 "mutating admin endpoints are disabled: set admin.token_env and that environment "
                 "variable"}});
      return false;
    }
    const std::string header = request.get("Authorization", "");
    const std::string prefix = "Bearer ";
    if (header.compare(0, prefix.size(), prefix) != 0 ||
        !sameToken(header.substr(prefix.size()), token)) {
      response.set("WWW-Authenticate", "Bearer");
      sendJson(response, HTTPResponse::HTTP_UNAUTHORIZED,
               {{"error", "unauthorized"}, {"message", "missing or wrong bearer token"}});
      return false;
    }
    return true;
  }

  ProxyApp& app_;
};

class AdminFactory : public Poco::Net::HTTPRequestHandlerFactory {
 public:
  explicit AdminFactory(ProxyApp& app) : app_(app) {}
  Poco::Net::HTTPRequestHandler* createRequestHandler(const HTTPServerRequest&) override {
    return new AdminHandler(app_);
  }

 private:
  ProxyApp& app_;
};

}  // namespace

std::string renderRoutes(ProxyApp& app, bool across_replicas) {
  const auto runtime = app.current();
  const auto& config = *runtime->config;
  const auto counters = countersByRoute(app, *runtime);
  const auto figures = app.figures();
  const ClusterFigures cluster = app.clusterFigures(figures, across_replicas);
  nlohmann::json doc;
  doc["version"] = runtime->version;
  doc["config_hash"] = config.hash;
  doc["default_upstream"] = config.default_upstream;
  const auto source = app.configSource();
  nlohmann::json source_doc = {
      {"kind", source.kind},
      {"location", source.location},
      {"last_error",
       source.last_error.empty() ? nlohmann::json(nullptr) : nlohmann::json(source.last_error)}};
  if (source.kind == "etcd") {
    source_doc["key"] = source.key;
    source_doc["mod_revision"] = source.mod_revision;
    source_doc["rejected_revision"] = source.rejected_revision;
    source_doc["etcd_error"] =
        source.etcd_error.empty() ? nlohmann::json(nullptr) : nlohmann::json(source.etcd_error);
  }
  doc["config_source"] = source_doc;
  doc["routes"] = nlohmann::json::array();
  for (const auto& route : config.routes) {
    RouteCounters c;
    if (auto it = counters.find(route.name); it != counters.end()) c = it->second;
    nlohmann::json entry = {
        {"name", route.name},
        {"path", route.path},
        {"methods", route.methods},
        {"stage", stageName(route.stage)},
        {"percent", stepPercent(route)},
        {"target", route.target.empty() ? nlohmann::json(nullptr) : nlohmann::json(route.target)},
        {"fallback", route.fallback},
        {"counters",
         {{"requests", c.requests},
          {"to_target", c.to_target},
          {"to_monolith", c.to_monolith},
          {"fallbacks", c.fallbacks},
          {"errors_5xx", c.errors},
          {"shadow_mismatches", app.shared().shadow->counters(route.name).mismatched}}}};
    if (!route.cohort.empty()) entry["cohort"] = route.cohort;
    entry["data"] = route.data.empty() ? nlohmann::json(nullptr) : nlohmann::json(route.data);
    auto* hold = app.holds().find(route.name);
    entry["held"] = hold != nullptr && hold->activeAt(RouteHold::Clock::now());
    // The current step's figures alone: what the gates of `strangler routes advance` judge,
    // summed over every replica on that step when the config is shared through etcd.
    const ClusterRoute& summed = cluster.routes.at(route.name);
    const RouteFigures& step = summed.step;
    if (cluster.across_replicas) {
      entry["replicas"] = {{"counted", summed.counted}, {"not_counted", summed.not_counted}};
    }
    entry["step"] = {{"since_ms", summed.since_ms}};
    entry["sides"] = {{"monolith", step.monolith.toJson()}, {"target", step.target.toJson()}};
    entry["shadow"] = step.shadow.toJson();
    const auto now = figures.find(route.name);  // with the eligible count from the metrics
    entry["shadow"]["total"] = now != figures.end()
                                   ? now->second.shadow.toJson()
                                   : app.shared().shadow->counters(route.name).toJson();
    if (!route.plan.empty() || route.has_gates) {
      nlohmann::json plan = nlohmann::json::array();
      for (const auto& p : route.effectivePlan())
        plan.push_back(describeStep(p));
      entry["plan"] = plan;
    }
    entry["gates"] = route.gates.toJson();
    doc["routes"].push_back(entry);
  }
  const auto now = CircuitBreaker::Clock::now();
  if (cluster.across_replicas) {
    doc["replicas"] = cluster.replicas;
    doc["decider"] = app.replicas() ? app.replicas()->decider() : std::string();
  }
  doc["upstreams"] = nlohmann::json::object();
  for (const auto& [name, upstream] : runtime->upstreams) {
    nlohmann::json entry;
    entry["endpoints"] = nlohmann::json::array();
    for (const auto& endpoint : upstream.endpoints)
      entry["endpoints"].push_back(endpoint->key);
    entry["circuit"] = upstream.breaker ? circuitStateName(upstream.breaker->state(now)) : "none";
    if (!upstream.config->discovery_prefix.empty())
      entry["discovery"] = {{"etcd_prefix", upstream.config->discovery_prefix}};
    doc["upstreams"][name] = entry;
  }
  return doc.dump(2) + "\n";
}

std::string renderMetrics(ProxyApp& app) {
  const auto runtime = app.current();
  const auto totals = app.shared().metrics.totals();
  std::ostringstream out;
  out << "# HELP strangler_proxy_requests_total Requests answered, by route, upstream and status.\n"
      << "# TYPE strangler_proxy_requests_total counter\n";
  for (const auto& [key, series] : totals.series) {
    for (const auto& [status, count] : series.by_status) {
      out << "strangler_proxy_requests_total{route=\"" << label(key.first) << "\",upstream=\""
          << label(key.second) << "\",status=\"" << status << "\"} " << count << "\n";
    }
  }
  out << "# HELP strangler_proxy_requests_by_protocol_total Requests answered, by the protocol "
         "the client spoke.\n"
      << "# TYPE strangler_proxy_requests_by_protocol_total counter\n";
  for (size_t i = 0; i < totals.protocols.size(); ++i) {
    out << "strangler_proxy_requests_by_protocol_total{protocol=\"" << Metrics::kProtocolNames[i]
        << "\"} " << totals.protocols[i] << "\n";
  }
  out << "# HELP strangler_proxy_request_duration_seconds Time from a complete request to its "
         "complete response.\n"
      << "# TYPE strangler_proxy_request_duration_seconds histogram\n";
  for (const auto& [key, series] : totals.series) {
    const std::string labels =
        "route=\"" + label(key.first) + "\",upstream=\"" + label(key.second) + "\"";
    uint64_t cumulative = 0;
    for (size_t i = 0; i < Metrics::kBuckets.size(); ++i) {
      cumulative += series.buckets[i];
      out << "strangler_proxy_request_duration_seconds_bucket{" << labels << ",le=\""
          << Metrics::kBuckets[i] << "\"} " << cumulative << "\n";
    }
    cumulative += series.buckets.back();
    out << "strangler_proxy_request_duration_seconds_bucket{" << labels << ",le=\"+Inf\"} "
        << cumulative << "\n"
        << "strangler_proxy_request_duration_seconds_sum{" << labels << "} " << series.sum_seconds
        << "\n"
        << "strangler_proxy_request_duration_seconds_count{" << labels << "} " << series.count
        << "\n";
  }
  out << "# HELP strangler_proxy_fallbacks_total Requests retried on the monolith, by route and "
         "reason.\n"
      << "# TYPE strangler_proxy_fallbacks_total counter\n";
  for (const auto& [key, count] : totals.fallbacks) {
    out << "strangler_proxy_fallbacks_total{route=\"" << label(key.first) << "\",reason=\""
        << label(key.second) << "\"} " << count << "\n";
  }
  out << "# HELP strangler_proxy_upstream_errors_total Upstream failures, by upstream and kind.\n"
      << "# TYPE strangler_proxy_upstream_errors_total counter\n";
  for (const auto& [key, count] : totals.upstream_errors) {
    out << "strangler_proxy_upstream_errors_total{upstream=\"" << label(key.first) << "\",kind=\""
        << label(key.second) << "\"} " << count << "\n";
  }
  out << "# HELP strangler_proxy_client_events_total Client messages or connections the proxy "
         "changed or refused instead of forwarding them as sent, by kind.\n"
      << "# TYPE strangler_proxy_client_events_total counter\n";
  for (const auto& [kind, count] : totals.client_events)
    out << "strangler_proxy_client_events_total{kind=\"" << label(kind) << "\"} " << count << "\n";
  const auto now = CircuitBreaker::Clock::now();
  out << "# HELP strangler_proxy_circuit_state Circuit breaker state: 0 closed, 1 open, 2 "
         "half-open.\n"
      << "# TYPE strangler_proxy_circuit_state gauge\n";
  for (const auto& [name, upstream] : runtime->upstreams) {
    if (!upstream.breaker) continue;
    out << "strangler_proxy_circuit_state{upstream=\"" << label(name) << "\"} "
        << static_cast<int>(upstream.breaker->state(now)) << "\n";
  }
  out << "# HELP strangler_proxy_circuit_openings_total Times a circuit opened.\n"
      << "# TYPE strangler_proxy_circuit_openings_total counter\n";
  for (const auto& [name, upstream] : runtime->upstreams) {
    if (!upstream.breaker) continue;
    out << "strangler_proxy_circuit_openings_total{upstream=\"" << label(name) << "\"} "
        << upstream.breaker->openings() << "\n";
  }
  out << "# HELP strangler_proxy_shadow_total Shadow copies by route and outcome (matched, "
         "mismatched, dropped, too_large, unanswered, target_error).\n"
      << "# TYPE strangler_proxy_shadow_total counter\n";
  for (const auto& route : runtime->config->routes) {
    if (route.target.empty()) continue;
    const auto c = app.shared().shadow->counters(route.name);
    for (const auto& [outcome, count] : {std::pair<const char*, uint64_t>{"matched", c.matched},
                                         {"mismatched", c.mismatched},
                                         {"dropped", c.dropped},
                                         {"too_large", c.too_large},
                                         {"unanswered", c.unanswered},
                                         {"target_error", c.target_errors}}) {
      out << "strangler_proxy_shadow_total{route=\"" << label(route.name) << "\",outcome=\""
          << outcome << "\"} " << count << "\n";
    }
  }
  out << "# HELP strangler_proxy_shadow_dropped_total Shadow copies not sent, by route and reason "
         "(queue_full, queue_bytes, max_inflight, max_rate, stopping).\n"
      << "# TYPE strangler_proxy_shadow_dropped_total counter\n";
  for (const auto& route : runtime->config->routes) {
    if (route.target.empty()) continue;
    for (const auto& [reason, count] : app.shared().shadow->counters(route.name).dropped_by) {
      out << "strangler_proxy_shadow_dropped_total{route=\"" << label(route.name) << "\",reason=\""
          << label(reason) << "\"} " << count << "\n";
    }
  }
  out << "# HELP strangler_proxy_shadow_mismatches_total Shadow responses that differed from the "
         "monolith's.\n"
      << "# TYPE strangler_proxy_shadow_mismatches_total counter\n";
  for (const auto& route : runtime->config->routes) {
    if (route.target.empty()) continue;
    out << "strangler_proxy_shadow_mismatches_total{route=\"" << label(route.name) << "\"} "
        << app.shared().shadow->counters(route.name).mismatched << "\n";
  }
  out << "# HELP strangler_proxy_shadow_mismatches_by_class_total Shadow mismatches by class: "
         "real, "
         "lag (gone once the sync caught up), unchecked (not re-checked).\n"
      << "# TYPE strangler_proxy_shadow_mismatches_by_class_total counter\n";
  for (const auto& route : runtime->config->routes) {
    if (route.target.empty()) continue;
    const auto c = app.shared().shadow->counters(route.name);
    for (const auto& [klass, count] : {std::pair<const char*, uint64_t>{"real", c.real},
                                       {"lag", c.lag},
                                       {"unchecked", c.unchecked}}) {
      out << "strangler_proxy_shadow_mismatches_by_class_total{route=\"" << label(route.name)
          << "\",class=\"" << klass << "\"} " << count << "\n";
    }
  }
  out << "# HELP strangler_held_requests_total Unsafe requests parked by the route's write hold.\n"
      << "# TYPE strangler_held_requests_total counter\n";
  for (const auto& route : runtime->config->routes) {
    const auto* hold = app.holds().find(route.name);
    out << "strangler_held_requests_total{route=\"" << label(route.name) << "\"} "
        << (hold != nullptr ? hold->heldTotal() : 0) << "\n";
  }
  out << "# HELP strangler_hold_timeouts_total Parked requests answered 503 after waiting "
         "cutover.hold_ms.\n"
      << "# TYPE strangler_hold_timeouts_total counter\n";
  for (const auto& route : runtime->config->routes) {
    const auto* hold = app.holds().find(route.name);
    out << "strangler_hold_timeouts_total{route=\"" << label(route.name) << "\"} "
        << (hold != nullptr ? hold->timeoutsTotal() : 0) << "\n";
  }
  out << "# HELP strangler_proxy_config_version Version of the config serving new requests.\n"
      << "# TYPE strangler_proxy_config_version gauge\n"
      << "strangler_proxy_config_version " << runtime->version << "\n"
      << "# HELP strangler_proxy_config_reloads_total Reload attempts, by result.\n"
      << "# TYPE strangler_proxy_config_reloads_total counter\n"
      << "strangler_proxy_config_reloads_total{result=\"ok\"} " << app.reloadsSucceeded() << "\n"
      << "strangler_proxy_config_reloads_total{result=\"rejected\"} " << app.reloadsFailed() << "\n"
      << "# HELP strangler_proxy_open_connections Client connections open.\n"
      << "# TYPE strangler_proxy_open_connections gauge\n"
      << "strangler_proxy_open_connections " << app.shared().open_connections.load() << "\n"
      << "# HELP strangler_proxy_active_requests Requests in flight.\n"
      << "# TYPE strangler_proxy_active_requests gauge\n"
      << "strangler_proxy_active_requests " << app.shared().active_requests.load() << "\n";
  return out.str();
}

common::Result<std::unique_ptr<AdminServer>> AdminServer::start(const common::HostPort& address,
                                                                ProxyApp& app) {
  using R = common::Result<std::unique_ptr<AdminServer>>;
  std::unique_ptr<AdminServer> admin(new AdminServer());
  try {
    Poco::Net::ServerSocket socket(Poco::Net::SocketAddress(address.host, address.port), 64);
    admin->address_ = common::HostPort{address.host, socket.address().port()};
    auto* params = new Poco::Net::HTTPServerParams();
    params->setMaxThreads(4);
    params->setMaxQueued(64);
    params->setKeepAlive(true);
    admin->server_ = std::make_unique<Poco::Net::HTTPServer>(new AdminFactory(app), socket, params);
    admin->server_->start();
  } catch (const Poco::Exception& error) {
    return R::failure("listen_failed", "cannot serve the admin API on " + address.toString() +
                                           ": " + error.displayText());
  }
  return admin;
}

AdminServer::~AdminServer() {
  stop();
}

void AdminServer::stop() {
  if (server_) {
    server_->stopAll(true);
    server_.reset();
  }
}

}  // namespace strangler::proxy
