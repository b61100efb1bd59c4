#include "strangler/acl/row.h"

#include <nlohmann/json.hpp>

#include <sstream>

namespace strangler::acl {

std::string describe(const Value& value) {
  if (std::holds_alternative<std::monostate>(value)) return "NULL";
  if (const auto* i = std::get_if<int64_t>(&value)) return std::to_string(*i);
  if (const auto* d = std::get_if<double>(&value)) {
    std::ostringstream out;
    out.precision(17);
    out << *d;
    return out.str();
  }
  // Legacy text need not be UTF-8 (a latin-1 column): replace bad bytes rather than throw
  // from inside an error message.
  return nlohmann::json(std::get<std::string>(value))
      .dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

}  // namespace strangler::acl
