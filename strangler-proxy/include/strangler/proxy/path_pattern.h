#pragma once

#include <string>
#include <vector>

#include "strangler/common/result.h"

namespace strangler::proxy {

/// RFC 3986 pchar without pct-encoded: the characters a normalized path segment carries as they
/// are (shared by the pattern parser and the request path normalizer; inline: it runs for
/// every byte of every request path).
inline bool isPathSegmentChar(unsigned char c) {
  if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9')) return true;
  switch (c) {
    case '-':
    case '.':
    case '_':
    case '~':
    case '!':
    case '$':
    case '&':
    case '\'':
    case '(':
    case ')':
    case '*':
    case '+':
    case ',':
    case ';':
    case '=':
    case ':':
    case '@':
      return true;
    default:
      return false;
  }
}

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
