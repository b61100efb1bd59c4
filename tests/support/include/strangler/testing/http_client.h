#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <string>

#include <nlohmann/json.hpp>

namespace strangler::testing {

struct HttpResponse {
  int status = 0;
  std::map<std::string, std::string> headers;  ///< names lower-cased
  std::string body;

  /// The body parsed as JSON (throws nlohmann::json::parse_error when it is not).
  nlohmann::json json() const { return nlohmann::json::parse(body); }
  /// A header by lower-case name, or "".
  std::string header(const std::string& lower_name) const;
};

/// One HTTP/1.1 request over a new connection (Poco HTTPClientSession).
HttpResponse httpRequest(const std::string& host, uint16_t port, const std::string& method,
                         const std::string& target, const std::string& body = "",
                         const std::map<std::string, std::string>& headers = {},
                         std::chrono::milliseconds timeout = std::chrono::seconds(10));

/// Sends raw bytes over TCP and returns everything the server answers until it closes the
/// connection or `timeout` passes. For malformed-request tests.
std::string rawExchange(const std::string& host, uint16_t port, const std::string& bytes,
                        std::chrono::milliseconds timeout = std::chrono::seconds(5));

/// A loopback TCP port that was free a moment ago (bind to port 0, read it, close).
uint16_t freeLoopbackPort();

}  // namespace strangler::testing
