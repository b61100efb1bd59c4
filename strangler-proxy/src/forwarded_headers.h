#pragma once

// The header section the proxy sends upstream: the client's end-to-end headers, then what the
// proxy says about the client (X-Forwarded-For/-Proto/-Host, Forwarded per RFC 7239), Via and
// Host. Only a peer in `trusted_proxies` may say who the client was: from any other peer those
// headers are replaced, never extended.

#include <string>
#include <string_view>

#include "strangler/proxy/router.h"

namespace strangler::proxy {

struct ForwardInput {
  const HeaderList* headers = nullptr;  ///< as received in the head (trailers are not here)
  std::string_view peer;                ///< the client's address, as text
  bool peer_trusted = false;
  std::string_view host;   ///< the authority asked for ("" when the request named none)
  std::string_view proto;  ///< "http" or "https"
};

/// Appends the header lines ("Name: value\r\n" each) for the upstream to `out`, without
/// framing headers.
void appendForwardedHeaders(const ForwardInput& in, std::string& out);

/// A Host value the proxy can forward: no whitespace, controls, '@' or '/'.
bool validHost(std::string_view host);

}  // namespace strangler::proxy
