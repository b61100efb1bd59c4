#pragma once

#include <nlohmann/json.hpp>

#include <optional>
#include <string>
#include <vector>

#include "strangler/acl/row.h"
#include "strangler/acl/translation_error.h"
#include "strangler/common/result.h"

namespace strangler::acl {

/// How one column converts between the legacy table and the service table.
enum class FieldKind {
  kInteger,       ///< integer ↔ integer
  kText,          ///< text ↔ text
  kReal,          ///< real ↔ real
  kMicroDegrees,  ///< integer micro-degrees ↔ real degrees (exact both ways)
  kCents,         ///< integer cents ↔ decimal text "12.34"
  kEnum,          ///< legacy code (integer or text) ↔ service text, by an explicit map
};

struct FieldMapping {
  std::string legacy;   ///< legacy column
  std::string service;  ///< service column
  FieldKind kind = FieldKind::kInteger;
  bool nullable = false;
  std::optional<Value> default_legacy;                     ///< used when the legacy value is NULL
  std::vector<std::pair<Value, std::string>> enum_values;  ///< legacy code → service name
};

/// A declarative table mapping (see acl/mappings/*.json): which legacy rows, which service
/// table, and per column a rename, a unit conversion, an enum map or a default. Translation is
/// pure: no I/O. Built only through create(), which reports every problem of the mapping file.
class RowTranslator {
 public:
  /// Parses and validates a mapping document; errors name their JSON path.
  static common::Result<RowTranslator> create(const nlohmann::json& document);
  /// Reads a mapping file, or a built-in mapping by name ("drivers").
  static common::Result<RowTranslator> load(const std::string& name_or_file);

  /// A legacy row (only the mapped columns are read) → a service row.
  Translated<Row> toService(const Row& legacy) const;
  /// A service row → a legacy row, including the legacy constants (e.g. user_type = 2).
  Translated<Row> toLegacy(const Row& service) const;

  /// Values by column, in fields() order: columns[field][row].
  using Columns = std::vector<std::vector<Value>>;
  /// Translates a batch in place, column by column (the fast path for bulk copies); returns, per
  /// row, the first error of that row, or nullopt. Constants are not added.
  std::vector<std::optional<TranslationError>> translateColumns(Columns& columns,
                                                                bool to_service) const;

  const std::string& name() const { return name_; }
  const std::string& legacyTable() const { return legacy_table_; }
  const std::string& legacyKey() const { return legacy_key_; }
  const std::string& serviceTable() const { return service_table_; }
  const std::string& serviceKey() const { return service_key_; }
  const std::vector<FieldMapping>& fields() const { return fields_; }
  /// Columns that select the mapped legacy rows and are set on rows written back (WHERE k = v).
  const Row& legacyConstants() const { return legacy_constants_; }
  /// The mapping document's own text of one enum: service name for a legacy code.
  const FieldMapping* fieldByService(const std::string& service_column) const;

 private:
  std::optional<TranslationError> toServiceValue(const FieldMapping& field, Value& value) const;
  std::optional<TranslationError> toLegacyValue(const FieldMapping& field, Value& value) const;

  std::string name_;
  std::string legacy_table_;
  std::string legacy_key_;
  std::string service_table_;
  std::string service_key_;
  Row legacy_constants_;
  std::vector<FieldMapping> fields_;
};

/// The text of a built-in mapping file ("drivers"), or nullopt.
std::optional<std::string> builtinMapping(const std::string& name);

}  // namespace strangler::acl
