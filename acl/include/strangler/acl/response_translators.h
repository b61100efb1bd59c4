#pragma once

#include <functional>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "strangler/common/result.h"

// Response translators: an extracted service's answer (its own model) → the legacy answer the
// monolith would have given, so the proxy's shadow stage can compare the two across domain
// models. Routes name one with "shadow": {"acl": NAME}. Pure functions, no I/O.
namespace strangler::acl {

/// Translates a target's JSON body (and status) to the legacy shape; an error names what could
/// not be translated.
using ResponseTranslator =
    std::function<common::Result<nlohmann::json>(int status, const nlohmann::json& body)>;

/// The translator registered under `name`, or nullopt.
std::optional<ResponseTranslator> responseTranslator(const std::string& name);
/// Every registered name (for config validation messages).
std::vector<std::string> responseTranslatorNames();

/// "drivers": driver-service's /v2 answers → the legacy /api/drivers answers. A driver object
/// becomes the legacy driver (legacy field names, status names and coordinate resolution); a
/// list becomes a list; an error keeps its code with legacy field names in the message. The
/// legacy `completed_trips` is the monolith's figure and has no /v2 counterpart: it is left out,
/// so a route comparing these should ignore "/completed_trips".
common::Result<nlohmann::json> driversToLegacy(int status, const nlohmann::json& body);

}  // namespace strangler::acl
