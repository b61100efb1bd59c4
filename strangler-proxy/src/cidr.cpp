#include "strangler/proxy/cidr.h"

#include <arpa/inet.h>

#include <algorithm>
#include <charconv>
#include <cstring>

namespace strangler::proxy {

std::optional<IpBytes> parseIp(std::string_view text) {
  if (text.empty() || text.size() >= INET6_ADDRSTRLEN) return std::nullopt;
  const std::string copy(text);
  IpBytes out{};
  in_addr v4{};
  if (inet_pton(AF_INET, copy.c_str(), &v4) == 1) {
    out[10] = 0xff;
    out[11] = 0xff;
    std::memcpy(out.data() + 12, &v4, 4);
    return out;
  }
  in6_addr v6{};
  if (inet_pton(AF_INET6, copy.c_str(), &v6) == 1) {
    std::memcpy(out.data(), &v6, 16);
    return out;
  }
  return std::nullopt;
}

std::optional<Cidr> Cidr::parse(std::string_view text) {
  const size_t slash = text.find('/');
  const auto address = parseIp(text.substr(0, slash));
  if (!address) return std::nullopt;
  const bool v4 = text.substr(0, slash).find(':') == std::string_view::npos;
  int bits = v4 ? 32 : 128;
  if (slash != std::string_view::npos) {
    const std::string_view digits = text.substr(slash + 1);
    const auto [end, error] = std::from_chars(digits.data(), digits.data() + digits.size(), bits);
    if (error != std::errc() || end != digits.data() + digits.size() || digits.empty() ||
        bits < 0 || bits > (v4 ? 32 : 128)) {
      return std::nullopt;
    }
  }
  Cidr cidr;
  cidr.prefix = v4 ? bits + 96 : bits;
  cidr.text = std::string(text);
  // The network itself: host bits cleared, so contains() compares whole bytes.
  for (int i = 0; i < 16; ++i) {
    const int keep = std::clamp(cidr.prefix - i * 8, 0, 8);
    const auto mask = static_cast<unsigned char>(keep == 0 ? 0 : 0xff << (8 - keep));
    cidr.network[static_cast<size_t>(i)] = (*address)[static_cast<size_t>(i)] & mask;
  }
  return cidr;
}

bool Cidr::contains(const IpBytes& address) const {
  for (int i = 0; i < 16; ++i) {
    const int keep = std::clamp(prefix - i * 8, 0, 8);
    const auto mask = static_cast<unsigned char>(keep == 0 ? 0 : 0xff << (8 - keep));
    if ((address[static_cast<size_t>(i)] & mask) != network[static_cast<size_t>(i)]) return false;
  }
  return true;
}

}  // namespace strangler::proxy
