#pragma once

#include <string>
#include <vector>

#include "strangler/common/result.h"

namespace strangler::proxy {

/// One segment of a route's match.path.
struct PatternSegment {
  enum class Kind { kLiteral, kParam, kSubtree };
  Kind kind = Kind::kLiteral;
  std::string text;  ///< the literal, or the parameter's name; empty for a subtree
};

/// A parsed match.path: "/api/trips", "/api/drivers/{id}/location", "/api/drivers/**".
struct PathPattern {
  std::vector<PatternSegment> segments;  ///< "/" has none

  /// Parses and checks a pattern: starts with '/', no empty, "." or ".." segments, no '%',
  /// `{name}` parameters, `**` only as the last segment.
  static common::Result<PathPattern> parse(const std::string& text);
  /// The pattern with parameter names erased ("/api/drivers/{}/location"), to spot duplicates.
  std::string shape() const;
};

}  // namespace strangler::proxy
