#pragma once

// Text helpers for header names and values (private to the proxy's libraries).

#include <string>
#include <string_view>

namespace strangler::proxy {

/// Case-insensitive equality (header names).
bool iequals(std::string_view a, std::string_view b);
/// Case-insensitive prefix test.
bool startsWithIgnoreCase(std::string_view text, std::string_view prefix);
/// ASCII lower case (header names, tokens).
std::string toLower(std::string_view text);
/// Without the optional white space (spaces and tabs) at either end.
std::string_view trimSpace(std::string_view text);

}  // namespace strangler::proxy
