#pragma once

// HTTP/1.1 fields as HTTP/2 ones, for both HTTP/2 sides of the proxy: the answers to clients
// (h2_session.cpp) and the requests to "protocol": "h2" upstreams (upstream_h2.cpp).

#include <nghttp2/nghttp2.h>

#include <string>
#include <utility>
#include <vector>

#include "http_util.h"

namespace strangler::proxy {

using H2Fields = std::vector<std::pair<std::string, std::string>>;

/// Fields HTTP/2 does not carry (RFC 9113 §8.2.2); Host is the request's :authority there.
inline bool notForH2(std::string_view name) {
  for (const char* dropped : {"connection", "keep-alive", "proxy-connection", "transfer-encoding",
                              "upgrade", "host", "http2-settings", "te"}) {
    if (iequals(name, dropped)) return true;
  }
  return false;
}

/// Appends `from` to `out` with lower-case names, leaving out what HTTP/2 does not carry and
/// what the Connection fields of `head` name.
inline void appendH2Fields(const HeaderList& from, const HeaderList& head, H2Fields& out) {
  for (const auto& [name, value] : from) {
    if (notForH2(name) || namedByConnection(head, name)) continue;
    out.emplace_back(toLower(name), value);
  }
}

/// nghttp2's view of `fields` (pointing into them: they must outlive the call it is passed to).
inline std::vector<nghttp2_nv> nghttp2Fields(const H2Fields& fields) {
  std::vector<nghttp2_nv> nva;
  nva.reserve(fields.size());
  for (const auto& [name, value] : fields) {
    nva.push_back(nghttp2_nv{reinterpret_cast<uint8_t*>(const_cast<char*>(name.data())),
                             reinterpret_cast<uint8_t*>(const_cast<char*>(value.data())),
                             name.size(), value.size(), NGHTTP2_NV_FLAG_NONE});
  }
  return nva;
}

}  // namespace strangler::proxy
