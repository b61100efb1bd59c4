#pragma once

// A slow, obviously-correct route matcher to check the segment trie against: every route's
// pattern is matched on its own, then the documented precedence picks one (a full match beats
// a subtree; between full matches a literal segment beats a parameter, left to right; between
// subtrees the deepest wins, then the same literal-first order; then config order).

#include <string>
#include <string_view>
#include <vector>

#include "strangler/proxy/config.h"
#include "strangler/proxy/path_pattern.h"

namespace strangler::fuzz {

inline std::vector<std::string_view> pathSegments(std::string_view path) {
  std::vector<std::string_view> segments;
  size_t start = 0;
  while (start < path.size()) {
    size_t slash = path.find('/', start);
    if (slash == std::string_view::npos) slash = path.size();
    if (slash > start) segments.push_back(path.substr(start, slash - start));
    start = slash + 1;
  }
  return segments;
}

inline bool acceptsMethod(const proxy::RouteConfig& route, std::string_view method) {
  if (route.methods.empty()) return true;
  for (const auto& m : route.methods) {
    if (m == method) return true;
  }
  return false;
}

/// The index of the route the documented precedence picks for a normalized path, or -1.
inline int referenceMatch(const std::vector<proxy::RouteConfig>& routes, std::string_view method,
                          std::string_view path) {
  using Kind = proxy::PatternSegment::Kind;
  const auto segments = pathSegments(path);
  int best_full = -1;
  std::vector<int> best_full_kinds;
  int best_subtree = -1;
  size_t best_depth = 0;
  std::vector<int> best_subtree_kinds;
  for (size_t i = 0; i < routes.size(); ++i) {
    if (!acceptsMethod(routes[i], method)) continue;
    const auto pattern = proxy::PathPattern::parse(routes[i].path);
    if (!pattern) continue;
    std::vector<int> kinds;  // 0 literal, 1 parameter: the order the trie explores them in
    bool subtree = false;
    bool matches = true;
    size_t depth = 0;
    for (const auto& segment : pattern->segments) {
      if (segment.kind == Kind::kSubtree) {
        subtree = true;
        break;
      }
      if (depth >= segments.size() ||
          (segment.kind == Kind::kLiteral && segment.text != segments[depth])) {
        matches = false;
        break;
      }
      kinds.push_back(segment.kind == Kind::kParam ? 1 : 0);
      ++depth;
    }
    if (!matches || (!subtree && depth != segments.size())) continue;
    if (!subtree) {
      if (best_full < 0 || kinds < best_full_kinds) {
        best_full = static_cast<int>(i);
        best_full_kinds = kinds;
      }
    } else if (best_subtree < 0 || depth > best_depth ||
               (depth == best_depth && kinds < best_subtree_kinds)) {
      best_subtree = static_cast<int>(i);
      best_depth = depth;
      best_subtree_kinds = kinds;
    }
  }
  return best_full >= 0 ? best_full : best_subtree;
}

}  // namespace strangler::fuzz
