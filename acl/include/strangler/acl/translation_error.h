#pragma once

#include <string>

#include "strangler/common/result.h"

namespace strangler::acl {

/// Why a row or payload could not be translated: which field, which value, and why. Never
/// papered over with a default the mapping did not declare.
struct TranslationError {
  std::string field;   ///< "users.drv_status", "location.lat"
  std::string value;   ///< the offending value as text ("7", "NULL", "\"abc\"")
  std::string reason;  ///< "is not one of 0, 1, 2"

  /// "users.drv_status = 7: is not one of 0, 1, 2".
  std::string message() const { return field + " = " + value + ": " + reason; }
};

template <typename T>
using Translated = common::Result<T, TranslationError>;

}  // namespace strangler::acl
