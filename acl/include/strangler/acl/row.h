#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <variant>

namespace strangler::acl {

/// One column value as the databases hold it: NULL, an integer, a real or text.
using Value = std::variant<std::monostate, int64_t, double, std::string>;

/// A table row by column name.
using Row = std::map<std::string, Value>;

/// A value for messages: NULL, 42, 1.5, "text".
std::string describe(const Value& value);

}  // namespace strangler::acl
