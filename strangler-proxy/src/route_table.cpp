#include "strangler/proxy/route_table.h"

#include "strangler/proxy/path_pattern.h"

namespace strangler::proxy {

uint32_t methodBit(std::string_view method) {
  static constexpr std::string_view kKnown[] = {"GET",    "HEAD",  "POST",    "PUT",
                                                "DELETE", "PATCH", "OPTIONS", "TRACE"};
  for (uint32_t i = 0; i < std::size(kKnown); ++i) {
    if (kKnown[i] == method) return 1u << i;
  }
  return 1u << 31;
}

struct RouteTable::Search {
  int best_subtree = -1;
  size_t best_subtree_depth = 0;
};

RouteTable::RouteTable(const std::vector<RouteConfig>& routes) : root_(std::make_unique<Node>()) {
  for (size_t i = 0; i < routes.size(); ++i) {
    auto pattern = PathPattern::parse(routes[i].path);
    if (!pattern) continue;  // validated configs never get here
    uint32_t methods = 0;
    for (const auto& method : routes[i].methods)
      methods |= methodBit(method);
    Node* node = root_.get();
    bool subtree = false;
    for (const auto& segment : pattern->segments) {
      if (segment.kind == PatternSegment::Kind::kSubtree) {
        subtree = true;
        break;
      }
      std::unique_ptr<Node>* next = nullptr;
      if (segment.kind == PatternSegment::Kind::kParam) {
        next = &node->param;
      } else {
        auto it = node->literals.find(segment.text);
        if (it == node->literals.end()) it = node->literals.emplace(segment.text, nullptr).first;
        next = &it->second;
      }
      if (!*next) *next = std::make_unique<Node>();
      node = next->get();
    }
    (subtree ? node->subtree : node->exact).push_back({static_cast<int>(i), methods});
  }
}

RouteTable::~RouteTable() = default;
RouteTable::RouteTable(RouteTable&&) noexcept = default;
RouteTable& RouteTable::operator=(RouteTable&&) noexcept = default;

int RouteTable::pick(const std::vector<Entry>& entries, uint32_t method) {
  for (const auto& entry : entries) {
    if (entry.methods == 0 || (entry.methods & method) != 0) return entry.route;
  }
  return -1;
}

bool RouteTable::walk(const Node& node, const std::vector<std::string_view>& segments, size_t index,
                      uint32_t method, Search& search) {
  if (!node.subtree.empty() && (search.best_subtree < 0 || index > search.best_subtree_depth)) {
    const int route = pick(node.subtree, method);
    if (route >= 0) {
      search.best_subtree = route;
      search.best_subtree_depth = index;
    }
  }
  if (index == segments.size()) {
    const int route = pick(node.exact, method);
    if (route < 0) return false;
    search.best_subtree = route;  // a full match wins over any subtree
    return true;
  }
  if (auto it = node.literals.find(segments[index]); it != node.literals.end()) {
    if (walk(*it->second, segments, index + 1, method, search)) return true;
  }
  if (node.param && walk(*node.param, segments, index + 1, method, search)) return true;
  return false;
}

int RouteTable::match(std::string_view method, std::string_view normalized_path) const {
  std::vector<std::string_view> segments;
  size_t start = 0;
  while (start < normalized_path.size()) {
    size_t slash = normalized_path.find('/', start);
    if (slash == std::string_view::npos) slash = normalized_path.size();
    if (slash > start) segments.push_back(normalized_path.substr(start, slash - start));
    start = slash + 1;
  }
  Search search;
  walk(*root_, segments, 0, methodBit(method), search);
  return search.best_subtree;
}

}  // namespace strangler::proxy
