#include "strangler/common/json_api.h"

#include <Poco/Net/HTTPRequestHandler.h>
#include <Poco/Net/HTTPServer.h>
#include <Poco/Net/HTTPServerParams.h>
#include <Poco/Net/HTTPServerRequest.h>
#include <Poco/Net/HTTPServerResponse.h>
#include <Poco/Net/ServerSocket.h>
#include <Poco/URI.h>

#include <algorithm>
#include <chrono>
#include <csignal>
#include <iostream>
#include <limits>

namespace strangler::common {
namespace {

using nlohmann::json;
using Poco::Net::HTTPResponse;

// A moderately oversized body is read and discarded so the client, still sending, gets to
// read the 413 instead of a connection reset; beyond this, answer and close at once.
constexpr int64_t kMaxDrainBytes = 1 << 20;

std::vector<std::string> splitPath(const std::string& path) {
  std::vector<std::string> segments;
  std::string current;
  for (char c : path) {
    if (c == '/') {
      if (!current.empty()) segments.push_back(current);
      current.clear();
    } else {
      current += c;
    }
  }
  if (!current.empty()) segments.push_back(current);
  return segments;
}

bool isTemplate(const std::string& part) {
  return part.size() > 2 && part.front() == '{' && part.back() == '}';
}

// Matches `segments` against a route; the score counts literal segments, so the most literal
// route wins when several match.
std::optional<int> matchScore(const JsonApiHandlerFactory::CompiledRoute& route,
                              const std::vector<std::string>& segments,
                              std::map<std::string, std::string>& params) {
  if (route.segments.size() != segments.size()) return std::nullopt;
  int literals = 0;
  std::map<std::string, std::string> captured;
  for (size_t i = 0; i < segments.size(); ++i) {
    const auto& part = route.segments[i];
    if (isTemplate(part)) {
      captured[part.substr(1, part.size() - 2)] = segments[i];
    } else if (part == segments[i]) {
      ++literals;
    } else {
      return std::nullopt;
    }
  }
  params = std::move(captured);
  return literals;
}

ApiReply tooLarge(std::size_t limit) {
  return errorReply(413, "payload_too_large",
                    "request body exceeds " + std::to_string(limit) + " bytes");
}

class JsonApiRequestHandler : public Poco::Net::HTTPRequestHandler {
 public:
  JsonApiRequestHandler(const std::vector<JsonApiHandlerFactory::CompiledRoute>& routes,
                        const JsonApiOptions& options)
      : routes_(routes), options_(options) {}

  void handleRequest(Poco::Net::HTTPServerRequest& request,
                     Poco::Net::HTTPServerResponse& response) override {
    const auto started = std::chrono::steady_clock::now();
    ApiReply r;
    // The one place errors are caught: every failure becomes a status and a readable message.
    try {
      r = dispatch(request);
    } catch (const std::exception& e) {
      std::optional<ApiReply> mapped;
      if (options_.map_exception) mapped = options_.map_exception(e);
      r = mapped ? *mapped : errorReply(500, "internal_error", e.what());
    }
    const std::string payload = r.body.dump();
    response.setStatusAndReason(static_cast<HTTPResponse::HTTPStatus>(r.status));
    response.setContentType("application/json");
    // After a refused body the rest of it may still be on the wire: do not reuse the connection.
    if (r.status == 413) response.setKeepAlive(false);
    for (const auto& [name, value] : r.headers)
      response.set(name, value);
    response.setContentLength(static_cast<std::streamsize>(payload.size()));
    response.send() << payload;
    if (options_.access_log) {
      const auto micros = std::chrono::duration_cast<std::chrono::microseconds>(
                              std::chrono::steady_clock::now() - started)
                              .count();
      std::cerr << request.getMethod() << " " << request.getURI() << " " << r.status << " "
                << micros << "us\n";
    }
  }

 private:
  ApiReply dispatch(Poco::Net::HTTPServerRequest& request) {
    Poco::URI uri;
    try {
      uri = Poco::URI(request.getURI());
    } catch (const Poco::Exception&) {
      return errorReply(400, "invalid_request", "malformed request target");
    }
    ApiCall call;
    for (const auto& [key, value] : uri.getQueryParameters())
      call.query[key] = value;
    const auto segments = splitPath(uri.getPath());
    // The body is read before routing so that a keep-alive connection never carries an
    // unread body into the next request.
    if (auto refused = readBody(request, call.body)) return *refused;

    const JsonApiHandlerFactory::CompiledRoute* best = nullptr;
    int best_score = -1;
    std::vector<std::string> allowed;
    for (const auto& route : routes_) {
      std::map<std::string, std::string> params;
      const auto score = matchScore(route, segments, params);
      if (!score) continue;
      if (route.method != request.getMethod()) {
        if (std::find(allowed.begin(), allowed.end(), route.method) == allowed.end())
          allowed.push_back(route.method);
        continue;
      }
      if (*score > best_score) {
        best = &route;
        best_score = *score;
        call.params = std::move(params);
      }
    }
    if (best != nullptr) return best->handler(call);
    if (allowed.empty()) {
      return errorReply(404, "not_found", "no such endpoint: " + uri.getPath());
    }
    std::string allow;
    for (const auto& method : allowed)
      allow += (allow.empty() ? "" : ", ") + method;
    ApiReply r = errorReply(405, "method_not_allowed",
                            request.getMethod() + " is not allowed here (allowed: " + allow + ")");
    r.headers["Allow"] = allow;
    return r;
  }

  std::optional<ApiReply> readBody(Poco::Net::HTTPServerRequest& request, std::string& body) {
    if (request.hasContentLength() &&
        request.getContentLength64() > static_cast<int64_t>(options_.max_body_bytes)) {
      if (request.getContentLength64() <= kMaxDrainBytes) {
        request.stream().ignore(std::numeric_limits<std::streamsize>::max());
      }
      return tooLarge(options_.max_body_bytes);
    }
    // Without Content-Length or chunked framing a request has no body (RFC 9112 6.3); reading
    // the stream then would wait for the client to close the connection.
    if (!request.hasContentLength() && !request.getChunkedTransferEncoding()) return std::nullopt;
    std::istream& in = request.stream();
    char buffer[8192];
    while (in.read(buffer, sizeof buffer) || in.gcount() > 0) {
      body.append(buffer, static_cast<size_t>(in.gcount()));
      if (body.size() > options_.max_body_bytes) return tooLarge(options_.max_body_bytes);
    }
    return std::nullopt;
  }

  const std::vector<JsonApiHandlerFactory::CompiledRoute>& routes_;
  const JsonApiOptions& options_;
};

}  // namespace

ApiReply errorReply(int status, const std::string& code, const std::string& message) {
  return ApiReply{status, json{{"error", code}, {"message", message}}, {}};
}

Result<json> parseJsonObject(const std::string& body) {
  json parsed = json::parse(body, nullptr, /*allow_exceptions=*/false);
  if (parsed.is_discarded()) {
    return Result<json>::failure("invalid_request", "request body is not valid JSON");
  }
  if (!parsed.is_object()) {
    return Result<json>::failure("invalid_request", "request body must be a JSON object");
  }
  return parsed;
}

JsonApiHandlerFactory::JsonApiHandlerFactory(std::vector<ApiRoute> routes, JsonApiOptions options)
    : options_(std::move(options)) {
  for (auto& route : routes) {
    routes_.push_back({route.method, splitPath(route.pattern), std::move(route.handler)});
  }
}

Poco::Net::HTTPRequestHandler* JsonApiHandlerFactory::createRequestHandler(
    const Poco::Net::HTTPServerRequest&) {
  return new JsonApiRequestHandler(routes_, options_);
}

void serveUntilStopped(const std::string& name, const HostPort& address, unsigned threads,
                       Poco::Net::HTTPRequestHandlerFactory::Ptr factory, const std::string& note,
                       const std::function<void(const HostPort&)>& on_listening) {
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);
  auto params = Poco::AutoPtr<Poco::Net::HTTPServerParams>(new Poco::Net::HTTPServerParams);
  params->setMaxThreads(static_cast<int>(threads));
  params->setMaxQueued(1024);
  params->setKeepAlive(true);
  Poco::Net::ServerSocket socket(Poco::Net::SocketAddress(address.host, address.port), 256);
  Poco::Net::HTTPServer server(factory, socket, params);
  server.start();
  const HostPort bound{address.host, socket.address().port()};
  std::cout << name << " listening on http://" << bound.toString() << " " << note << std::endl;
  if (on_listening) on_listening(bound);
  int received = 0;
  sigwait(&signals, &received);
  std::cerr << name << ": stopping (signal " << received << ")\n";
  server.stopAll(true);
}

}  // namespace strangler::common
