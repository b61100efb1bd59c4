#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "strangler/proxy/config.h"

namespace strangler::proxy {

/// A bit per well-known method (GET, HEAD, POST, PUT, DELETE, PATCH, OPTIONS, TRACE); other
/// methods get a bit of their own that only method-less routes accept.
uint32_t methodBit(std::string_view method);

/// A segment trie over the routes' match paths. Lookup walks the request's segments once
/// (backtracking only through `{param}` branches), so its cost does not grow with the number
/// of routes. Precedence: a full match beats a `/**` subtree match; between full matches a
/// literal segment beats a parameter, left to right; between subtrees the deepest wins.
class RouteTable {
 public:
  /// Builds the trie from validated routes (indices refer to `routes`).
  explicit RouteTable(const std::vector<RouteConfig>& routes);
  ~RouteTable();
  RouteTable(RouteTable&&) noexcept;
  RouteTable& operator=(RouteTable&&) noexcept;

  /// The index of the most specific route for a normalized path and a method, or -1.
  int match(std::string_view method, std::string_view normalized_path) const;

 private:
  struct Entry {
    int route = -1;
    uint32_t methods = 0;  ///< 0: any method
  };
  struct Node {
    std::map<std::string, std::unique_ptr<Node>, std::less<>> literals;
    std::unique_ptr<Node> param;
    std::vector<Entry> exact;
    std::vector<Entry> subtree;
  };
  struct Search;

  static int pick(const std::vector<Entry>& entries, uint32_t method);
  static bool walk(const Node& node, const std::vector<std::string_view>& segments, size_t index,
                   uint32_t method, Search& search);

  std::unique_ptr<Node> root_;
};

}  // namespace strangler::proxy
