#pragma once

#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "strangler/proxy/router.h"

// How the shadow stage compares the monolith's answer with the target's. Pure functions.
namespace strangler::proxy {

/// An HTTP answer as the shadow stage keeps it.
struct CapturedResponse {
  int status = 0;
  HeaderList headers;
  std::string body;
  bool truncated = false;  ///< the body was cut at the capture limit

  /// The first header named `name` (any case), or "".
  std::string header(std::string_view name) const;
};

/// JSON pointers (RFC 6901) at which `a` and `b` differ: objects compare key by key (order is
/// irrelevant), numbers by value (1 == 1.0), arrays element by element. A key or element that
/// only one side has is reported at its own pointer. At most `limit` pointers.
std::vector<std::string> jsonDifferences(const nlohmann::json& a, const nlohmann::json& b,
                                         size_t limit = 64);

/// True when `pointer` is `pattern` or lies under it. A `*` token in the pattern matches any one
/// token (an array index or a key): "/items/*/updated_at".
bool pointerCovered(std::string_view pattern, std::string_view pointer);

/// What to compare, from the route's "shadow" settings.
struct CompareOptions {
  std::vector<std::string> ignore;                   ///< JSON pointer patterns
  std::vector<std::string> headers{"Content-Type"};  ///< compared case-insensitively by value
};

/// The differences between two answers: "status", "header:<name>" (lower case), JSON pointers
/// for JSON bodies, or "body" for other bodies that differ byte-wise. Bodies are compared as
/// JSON when both parse as JSON. Differences covered by `options.ignore` or by `noise` (the
/// pointers and fields at which two answers of the monolith itself differed) are left out.
/// `as_bytes`, when given, tells whether the bodies were compared byte for byte (one of them
/// was not JSON).
std::vector<std::string> compareResponses(const CapturedResponse& monolith,
                                          const CapturedResponse& target,
                                          const CompareOptions& options,
                                          const std::vector<std::string>& noise = {},
                                          bool* as_bytes = nullptr);

}  // namespace strangler::proxy
