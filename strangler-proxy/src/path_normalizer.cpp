#include "strangler/proxy/path_normalizer.h"

#include "strangler/proxy/path_pattern.h"

#include <algorithm>
#include <vector>

namespace strangler::proxy {
namespace {

using R = common::Result<NormalizedTarget>;

int hexValue(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

bool isUnreserved(unsigned char c) {
  return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' ||
         c == '.' || c == '_' || c == '~';
}

// Characters a path may carry unescaped (RFC 3986 pchar plus '/').
bool isPathChar(unsigned char c) {
  return c == '/' || isPathSegmentChar(c);
}

R bad(const std::string& why) {
  return R::failure("bad_path", why);
}

}  // namespace

common::Result<NormalizedTarget> normalizeTarget(std::string_view target) {
  if (target.empty() || target.front() != '/') return bad("request target must start with '/'");
  NormalizedTarget out;
  const size_t question = target.find('?');
  std::string_view raw_path = target.substr(0, question);
  if (question != std::string_view::npos) {
    out.has_query = true;
    out.query = std::string(target.substr(question + 1));
    for (const unsigned char c : out.query) {
      if (c <= 0x20 || c >= 0x7f || c == '#') return bad("query has a forbidden character");
    }
  }

  // Pass 1: decode unreserved escapes, canonicalize the rest, refuse ambiguous bytes.
  std::string decoded;
  decoded.reserve(raw_path.size());
  for (size_t i = 0; i < raw_path.size(); ++i) {
    const unsigned char c = static_cast<unsigned char>(raw_path[i]);
    if (c == '%') {
      if (i + 2 >= raw_path.size()) return bad("truncated escape");
      const int high = hexValue(raw_path[i + 1]);
      const int low = hexValue(raw_path[i + 2]);
      if (high < 0 || low < 0) return bad("malformed escape");
      const auto value = static_cast<unsigned char>(high * 16 + low);
      if (value == '/' || value == '\\' || value == 0 || value == '%') {
        return bad("encoded '/', '\\', '%' or NUL in path");
      }
      if (isUnreserved(value)) {
        decoded += static_cast<char>(value);
      } else {
        static const char* kHex = "0123456789ABCDEF";
        decoded += '%';
        decoded += kHex[value >> 4];
        decoded += kHex[value & 15];
      }
      i += 2;
      continue;
    }
    if (!isPathChar(c)) return bad("path has a forbidden character");
    decoded += static_cast<char>(c);
  }

  // Pass 2: split into segments, fold empty ones, resolve dot segments.
  std::vector<std::string_view> segments;
  std::string_view rest(decoded);
  const bool trailing_slash = decoded.size() > 1 && decoded.back() == '/';
  size_t start = 1;
  bool ends_in_directory = trailing_slash;
  while (start <= rest.size()) {
    size_t slash = rest.find('/', start);
    if (slash == std::string_view::npos) slash = rest.size();
    const std::string_view segment = rest.substr(start, slash - start);
    // "..;x" is a plain segment to RFC 3986 but ".." to servlet containers, which cut path
    // parameters before resolving dot segments: routed one way, served another.
    const std::string_view bare =
        segment.substr(0, std::min(segment.find(';'), segment.find("%3B")));
    if (bare.size() < segment.size() && (bare == "." || bare == "..")) {
      return bad("dot segment with parameters");
    }
    if (segment == "..") {
      if (segments.empty()) return bad("path climbs above the root");
      segments.pop_back();
      ends_in_directory = true;
    } else if (segment == ".") {
      ends_in_directory = true;
    } else if (!segment.empty()) {
      segments.push_back(segment);
      ends_in_directory = trailing_slash;
    }
    start = slash + 1;
  }
  out.path.reserve(decoded.size());
  for (const auto segment : segments) {
    out.path += '/';
    out.path += segment;
  }
  if (out.path.empty() || ends_in_directory) out.path += '/';
  return out;
}

}  // namespace strangler::proxy
