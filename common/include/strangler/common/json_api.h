#pragma once

#include <Poco/Net/HTTPRequestHandlerFactory.h>

#include <cstddef>
#include <functional>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "strangler/common/host_port.h"
#include "strangler/common/result.h"

namespace strangler::common {

/// What a JSON API handler answers.
struct ApiReply {
  int status = 200;
  nlohmann::json body;
  std::map<std::string, std::string> headers;
};

/// What a JSON API handler gets: path template values, decoded query parameters, the body.
struct ApiCall {
  std::map<std::string, std::string> params;
  std::map<std::string, std::string> query;
  std::string body;
};

using ApiHandler = std::function<ApiReply(const ApiCall&)>;

/// One endpoint: a method and a path pattern such as "/api/drivers/{id}/location". Literal
/// segments beat {templates}, so "/api/drivers/nearby" wins over "/api/drivers/{id}".
struct ApiRoute {
  std::string method;
  std::string pattern;
  ApiHandler handler;
};

struct JsonApiOptions {
  std::size_t max_body_bytes = 64 * 1024;  ///< larger request bodies get 413
  bool access_log = false;                 ///< one line per request on stderr
  /// Turns an exception a handler threw into a reply (e.g. a storage error into 503); when it
  /// returns nullopt the exception becomes a 500.
  std::function<std::optional<ApiReply>(const std::exception&)> map_exception;
};

/// {"error": code, "message": message} with `status`.
ApiReply errorReply(int status, const std::string& code, const std::string& message);

/// Parses a request body that must be a JSON object; 400-style Error otherwise.
Result<nlohmann::json> parseJsonObject(const std::string& body);

/// Serves a table of JSON endpoints on Poco's HTTPServer: routing with 404/405 (+Allow), body
/// limits (413), one top-level catch per request, optional access log. Every answer is JSON.
class JsonApiHandlerFactory : public Poco::Net::HTTPRequestHandlerFactory {
 public:
  JsonApiHandlerFactory(std::vector<ApiRoute> routes, JsonApiOptions options);
  /// One handler per request.
  Poco::Net::HTTPRequestHandler* createRequestHandler(
      const Poco::Net::HTTPServerRequest& request) override;

  struct CompiledRoute {
    std::string method;
    std::vector<std::string> segments;
    ApiHandler handler;
  };

 private:
  std::vector<CompiledRoute> routes_;
  JsonApiOptions options_;
};

/// Serves `factory` on `address` with Poco's HTTPServer until SIGINT or SIGTERM, then stops
/// gracefully (in-flight requests finish). Prints "<name> listening on http://HOST:PORT <note>"
/// on stdout once bound (port 0 picks a free port; scripts and tests read that line).
/// Call it before any other thread starts: it blocks the termination signals to take them
/// synchronously.
/// `on_listening`, when set, is called with the bound address once the server serves (e.g. to
/// register it in service discovery).
void serveUntilStopped(const std::string& name, const HostPort& address, unsigned threads,
                       Poco::Net::HTTPRequestHandlerFactory::Ptr factory, const std::string& note,
                       const std::function<void(const HostPort&)>& on_listening = nullptr);

}  // namespace strangler::common
