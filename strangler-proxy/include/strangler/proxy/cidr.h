#pragma once

// Address blocks for `trusted_proxies`: "10.0.0.0/8", "::1/128" or one address.

#include <array>
#include <optional>
#include <string>
#include <string_view>

namespace strangler::proxy {

/// An IP address as 16 bytes: IPv4 as IPv4-mapped IPv6 (::ffff:a.b.c.d), so one comparison
/// serves both families.
using IpBytes = std::array<unsigned char, 16>;

/// "127.0.0.1" or "::1" → its bytes; nullopt when the text is not an address.
std::optional<IpBytes> parseIp(std::string_view text);

struct Cidr {
  IpBytes network{};
  int prefix = 128;  ///< in IPv6 bits (an IPv4 /8 is /104 here)
  std::string text;  ///< as written

  /// "a.b.c.d/n", "x::y/n" or one address; nullopt when malformed.
  static std::optional<Cidr> parse(std::string_view text);
  bool contains(const IpBytes& address) const;
};

}  // namespace strangler::proxy
