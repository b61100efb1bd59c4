#pragma once

#include <string>
#include <string_view>

#include "strangler/common/result.h"

namespace strangler::proxy {

/// A request target split into its normalized path and its query (without '?').
struct NormalizedTarget {
  std::string path;
  std::string query;
  bool has_query = false;
};

/// Normalizes an origin-form request target ("/a/./b//c?x=1") so that every spelling of a path
/// has one form: percent-encoded unreserved characters are decoded, other escapes get upper-case
/// hex, repeated '/' are folded, "." and ".." segments are resolved. Ambiguous spellings are
/// refused (error code "bad_path"): encoded '/', '\\' or NUL, malformed escapes, control or
/// non-ASCII bytes, '#', ".." above the root, "." or ".." with path parameters ("..;x"),
/// anything that does not start with '/'.
common::Result<NormalizedTarget> normalizeTarget(std::string_view target);

}  // namespace strangler::proxy
