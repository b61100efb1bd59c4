#pragma once

#include <cstdint>
#include <string>

#include "strangler/common/result.h"

namespace strangler::common {

/// A listen or connect address: "127.0.0.1:8080", "[::1]:8080", "localhost:0".
struct HostPort {
  std::string host;
  uint16_t port = 0;

  /// "host:port", with brackets around IPv6 hosts.
  std::string toString() const;
};

/// Parses "HOST:PORT" ("[V6]:PORT" for IPv6); port 0 is allowed (pick a free one).
Result<HostPort> parseHostPort(const std::string& text);

/// True for IPv4 literals in 127.0.0.0/8, ::1 and "localhost" (not for names that merely
/// start with "127.").
bool isLoopbackHost(const std::string& host);

}  // namespace strangler::common
