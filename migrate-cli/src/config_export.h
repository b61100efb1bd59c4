#pragma once

#include <string>
#include <vector>

#include "strangler/proxy/config.h"

namespace strangler::cli {

/// A config translated for another proxy: the file's text, and what the target cannot express
/// exactly (one sentence each; the generated file carries them as comments too).
struct ExportedConfig {
  std::string text;
  std::vector<std::string> notes;
};

/// A complete, self-contained nginx.conf with the routing of `config` (run it with
/// `nginx -p PREFIX -c FILE`; the pid, error log and temp paths are relative to PREFIX).
/// `source` names the config it came from, for the header comment.
ExportedConfig exportNginx(const proxy::ProxyConfig& config, const std::string& source);

/// A static Envoy bootstrap (JSON) with the routing of `config`.
ExportedConfig exportEnvoy(const proxy::ProxyConfig& config, const std::string& source);

/// The indices of `config.routes` in the order a first-match proxy must try them so that the
/// most specific route wins as in strangler-proxy's route table: full matches before subtrees,
/// a literal segment before a parameter (left to right), deeper subtrees first, and routes of
/// one path shape in config order. Trying them in this order and skipping routes whose methods
/// don't include the request's gives the same route as strangler-proxy for every request.
std::vector<size_t> routesBySpecificity(const proxy::ProxyConfig& config);

/// The PCRE regex, anchored at both ends, for the normalized paths `route_path` matches
/// (`/api/trips` → `^/api/trips/?$`, `/api/drivers/**` → `^/api/drivers(/.*)?$`).
std::string pathRegex(const std::string& route_path);

}  // namespace strangler::cli
