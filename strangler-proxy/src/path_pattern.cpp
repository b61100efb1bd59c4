#include "strangler/proxy/path_pattern.h"

#include <cctype>

namespace strangler::proxy {
namespace {

bool isParamName(const std::string& name) {
  if (name.empty()) return false;
  for (const unsigned char c : name) {
    if (!std::isalnum(c) && c != '_') return false;
  }
  return true;
}

}  // namespace

common::Result<PathPattern> PathPattern::parse(const std::string& text) {
  using R = common::Result<PathPattern>;
  if (text.empty() || text.front() != '/') return R::failure("invalid_path", "must start with '/'");
  PathPattern pattern;
  if (text == "/") return pattern;
  size_t start = 1;
  while (start <= text.size()) {
    const size_t slash = text.find('/', start);
    const size_t end = slash == std::string::npos ? text.size() : slash;
    const std::string segment = text.substr(start, end - start);
    const bool last = end == text.size();
    if (segment.empty()) {
      if (last) break;  // one trailing '/' is accepted and means the same path
      return R::failure("invalid_path", "has an empty segment ('//')");
    }
    if (segment == "." || segment == "..") {
      return R::failure("invalid_path", "has a '" + segment + "' segment");
    }
    if (!pattern.segments.empty() &&
        pattern.segments.back().kind == PatternSegment::Kind::kSubtree) {
      return R::failure("invalid_path", "'**' must be the last segment");
    }
    if (segment == "**") {
      pattern.segments.push_back({PatternSegment::Kind::kSubtree, ""});
    } else if (segment.front() == '{') {
      if (segment.back() != '}' || !isParamName(segment.substr(1, segment.size() - 2))) {
        return R::failure("invalid_path", "segment '" + segment + "' is not a parameter like {id}");
      }
      pattern.segments.push_back(
          {PatternSegment::Kind::kParam, segment.substr(1, segment.size() - 2)});
    } else {
      for (const unsigned char c : segment) {
        if (!isPathSegmentChar(c) || c == '*') {
          return R::failure("invalid_path", "segment '" + segment +
                                                "' has a character that is not allowed here ('" +
                                                std::string(1, static_cast<char>(c)) + "')");
        }
      }
      pattern.segments.push_back({PatternSegment::Kind::kLiteral, segment});
    }
    if (slash == std::string::npos) break;
    start = slash + 1;
  }
  return pattern;
}

std::string PathPattern::shape() const {
  std::string out;
  for (const auto& segment : segments) {
    out += '/';
    switch (segment.kind) {
      case PatternSegment::Kind::kLiteral:
        out += segment.text;
        break;
      case PatternSegment::Kind::kParam:
        out += "{}";
        break;
      case PatternSegment::Kind::kSubtree:
        out += "**";
        break;
    }
  }
  return out.empty() ? "/" : out;
}

}  // namespace strangler::proxy
