#pragma once

#include <memory>
#include <string>

#include "strangler/proxy/router.h"

namespace strangler::proxy {

/// A request the client was served by the monolith for, to be replayed on the route's target
/// and compared (the shadow stage). Owned copies: the sink may keep it past the request.
struct ShadowRequest {
  std::string route;
  std::string target;
  std::string method;
  std::string path;  ///< as sent to the target (rewritten)
  std::string query;
  HeaderList headers;  ///< as forwarded (hop-by-hop removed, X-Forwarded-* added)
  std::string body;
};

/// The seam for shadow traffic. Called on a loop thread: implementations must only queue the
/// request and return at once (the comparison runs elsewhere). The monolith's response is not
/// passed yet; a full implementation will get it through the same interface.
class ShadowSink {
 public:
  virtual ~ShadowSink() = default;
  /// Offers a copy of a request in the shadow stage; returns false when it was dropped.
  virtual bool offer(ShadowRequest request) = 0;
  /// Mismatches counted so far for `route` (for /metrics and /routes).
  virtual uint64_t mismatches(const std::string& route) const = 0;
};

/// Drops every copy: shadow stage routes are served by the monolith only.
class NullShadowSink : public ShadowSink {
 public:
  bool offer(ShadowRequest) override { return false; }
  uint64_t mismatches(const std::string&) const override { return 0; }
};

}  // namespace strangler::proxy
