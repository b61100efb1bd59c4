#include "strangler/proxy/response_diff.h"

#include <algorithm>
#include "text.h"

namespace strangler::proxy {
namespace {

using nlohmann::json;

std::string escapeToken(const std::string& token) {
  std::string out;
  for (const char c : token) {
    if (c == '~') {
      out += "~0";
    } else if (c == '/') {
      out += "~1";
    } else {
      out += c;
    }
  }
  return out;
}

void walk(const json& a, const json& b, const std::string& at, std::vector<std::string>& out,
          size_t limit) {
  if (out.size() >= limit) return;
  if (a.is_number() && b.is_number()) {
    // Integers compare exactly; anything involving a fraction compares as double.
    const bool equal = (a.is_number_float() || b.is_number_float())
                           ? a.get<double>() == b.get<double>()
                       : (a.is_number_unsigned() || b.is_number_unsigned())
                           ? a.get<uint64_t>() == b.get<uint64_t>()
                           : a.get<int64_t>() == b.get<int64_t>();
    if (!equal) out.push_back(at);
    return;
  }
  if (a.type() != b.type()) {
    out.push_back(at);
    return;
  }
  if (a.is_object()) {
    for (const auto& [key, value] : a.items()) {
      const auto other = b.find(key);
      const std::string child = at + "/" + escapeToken(key);
      if (other == b.end()) {
        if (out.size() < limit) out.push_back(child);
      } else {
        walk(value, *other, child, out, limit);
      }
    }
    for (const auto& [key, value] : b.items()) {
      if (!a.contains(key) && out.size() < limit) out.push_back(at + "/" + escapeToken(key));
    }
    return;
  }
  if (a.is_array()) {
    const size_t common = std::min(a.size(), b.size());
    for (size_t i = 0; i < common; ++i)
      walk(a[i], b[i], at + "/" + std::to_string(i), out, limit);
    for (size_t i = common; i < std::max(a.size(), b.size()) && out.size() < limit; ++i)
      out.push_back(at + "/" + std::to_string(i));
    return;
  }
  if (a != b) out.push_back(at);
}

// Splits a pointer into its (still escaped) tokens; "" has none.
std::vector<std::string_view> tokens(std::string_view pointer) {
  std::vector<std::string_view> out;
  size_t at = 0;
  while (at < pointer.size() && pointer[at] == '/') {
    const size_t next = pointer.find('/', at + 1);
    const size_t end = next == std::string_view::npos ? pointer.size() : next;
    out.push_back(pointer.substr(at + 1, end - at - 1));
    at = end;
  }
  return out;
}

bool covered(const std::string& difference, const std::vector<std::string>& patterns) {
  return std::any_of(patterns.begin(), patterns.end(), [&](const std::string& pattern) {
    return pointerCovered(pattern, difference);
  });
}

}  // namespace

std::string CapturedResponse::header(std::string_view name) const {
  if (const auto value = findHeader(headers, name)) return std::string(*value);
  return "";
}

std::vector<std::string> jsonDifferences(const json& a, const json& b, size_t limit) {
  std::vector<std::string> out;
  walk(a, b, "", out, limit);
  return out;
}

bool pointerCovered(std::string_view pattern, std::string_view pointer) {
  // Non-JSON differences ("status", "header:...", "body") are named, not pointers: they are
  // covered only by the same name.
  if (pattern.empty() || pattern.front() != '/' || pointer.empty() || pointer.front() != '/')
    return pattern == pointer;
  const auto want = tokens(pattern);
  const auto have = tokens(pointer);
  if (have.size() < want.size()) return false;
  for (size_t i = 0; i < want.size(); ++i) {
    if (want[i] != "*" && want[i] != have[i]) return false;
  }
  return true;
}

std::vector<std::string> compareResponses(const CapturedResponse& monolith,
                                          const CapturedResponse& target,
                                          const CompareOptions& options,
                                          const std::vector<std::string>& noise, bool* as_bytes) {
  std::vector<std::string> found;
  if (monolith.status != target.status) found.push_back("status");
  for (const auto& name : options.headers) {
    if (toLower(trimSpace(monolith.header(name))) != toLower(trimSpace(target.header(name))))
      found.push_back("header:" + toLower(name));
  }
  const json a = json::parse(monolith.body, nullptr, /*allow_exceptions=*/false);
  const json b = json::parse(target.body, nullptr, /*allow_exceptions=*/false);
  const bool both_json =
      !monolith.body.empty() && !target.body.empty() && !a.is_discarded() && !b.is_discarded();
  if (as_bytes != nullptr)
    *as_bytes = !both_json && !(monolith.body.empty() && target.body.empty());
  if (both_json) {
    for (auto& pointer : jsonDifferences(a, b))
      found.push_back(std::move(pointer));
  } else if (monolith.body != target.body) {
    found.push_back("body");
  }
  std::vector<std::string> kept;
  for (auto& difference : found) {
    if (!covered(difference, options.ignore) && !covered(difference, noise))
      kept.push_back(std::move(difference));
  }
  return kept;
}

}  // namespace strangler::proxy
