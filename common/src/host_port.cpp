#include "strangler/common/host_port.h"

#include <arpa/inet.h>

#include <charconv>

namespace strangler::common {

std::string HostPort::toString() const {
  if (host.find(':') != std::string::npos) return "[" + host + "]:" + std::to_string(port);
  return host + ":" + std::to_string(port);
}

Result<HostPort> parseHostPort(const std::string& text) {
  std::string host;
  std::string port_text;
  if (!text.empty() && text.front() == '[') {
    const auto close = text.find(']');
    if (close == std::string::npos || close + 1 >= text.size() || text[close + 1] != ':') {
      return Result<HostPort>::failure("invalid_address", "'" + text + "' is not [IPV6]:PORT");
    }
    host = text.substr(1, close - 1);
    port_text = text.substr(close + 2);
  } else {
    const auto colon = text.rfind(':');
    if (colon == std::string::npos || text.find(':') != colon) {
      return Result<HostPort>::failure("invalid_address", "'" + text + "' is not HOST:PORT");
    }
    host = text.substr(0, colon);
    port_text = text.substr(colon + 1);
  }
  if (host.empty()) {
    return Result<HostPort>::failure("invalid_address", "'" + text + "' has no host");
  }
  unsigned port = 0;
  const auto* begin = port_text.data();
  const auto* end = begin + port_text.size();
  const auto [ptr, ec] = std::from_chars(begin, end, port);
  if (port_text.empty() || ec != std::errc() || ptr != end || port > 65535) {
    return Result<HostPort>::failure("invalid_address",
                                     "'" + text + "' has no valid port (0..65535)");
  }
  return HostPort{host, static_cast<uint16_t>(port)};
}

bool isLoopbackHost(const std::string& host) {
  if (host == "localhost" || host == "::1") return true;
  // An IPv4 literal only: a name such as "127.0.0.1.example.com" may resolve anywhere.
  in_addr address{};
  return ::inet_pton(AF_INET, host.c_str(), &address) == 1 && (ntohl(address.s_addr) >> 24) == 127;
}

}  // namespace strangler::common
