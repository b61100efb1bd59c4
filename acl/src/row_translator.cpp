#include "strangler/acl/row_translator.h"

#include <cmath>
#include <fstream>
#include <set>
#include <sstream>

namespace strangler::acl {
namespace {

using nlohmann::json;

bool isIdentifier(const std::string& text) {
  if (text.empty() || text.size() > 63) return false;
  if (!(std::isalpha(static_cast<unsigned char>(text[0])) || text[0] == '_')) return false;
  for (char c : text) {
    if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '_')) return false;
  }
  return true;
}

std::optional<FieldKind> kindFromName(const std::string& name) {
  if (name == "integer") return FieldKind::kInteger;
  if (name == "text") return FieldKind::kText;
  if (name == "real") return FieldKind::kReal;
  if (name == "micro_degrees") return FieldKind::kMicroDegrees;
  if (name == "cents") return FieldKind::kCents;
  if (name == "enum") return FieldKind::kEnum;
  return std::nullopt;
}

std::optional<Value> valueFromJson(const json& j) {
  if (j.is_number_integer()) return Value(j.get<int64_t>());
  if (j.is_number_float()) return Value(j.get<double>());
  if (j.is_string()) return Value(j.get<std::string>());
  return std::nullopt;
}

// Enum keys in the mapping file are JSON object keys (text); integer-looking ones mean
// integer legacy codes.
Value enumKey(const std::string& key) {
  if (!key.empty() && key.find_first_not_of("-0123456789") == std::string::npos) {
    try {
      return Value(static_cast<int64_t>(std::stoll(key)));
    } catch (const std::exception&) {
      // Too long for an integer: keep it as text.
    }
  }
  return Value(key);
}

class Problems {
 public:
  void add(const std::string& path, const std::string& message) {
    text_ += (text_.empty() ? "" : "\n") + path + ": " + message;
  }
  bool empty() const { return text_.empty(); }
  const std::string& text() const { return text_; }

 private:
  std::string text_;
};

void checkKeys(const json& object, const std::string& path, const std::set<std::string>& allowed,
               Problems& problems) {
  for (const auto& [key, value] : object.items()) {
    if (!allowed.count(key)) problems.add(path + "." + key, "unknown key");
  }
}

std::string identifierAt(const json& object, const std::string& key, const std::string& path,
                         Problems& problems) {
  const auto it = object.find(key);
  if (it == object.end() || !it->is_string()) {
    problems.add(path + "." + key, "is required and must be a string");
    return {};
  }
  const auto text = it->get<std::string>();
  if (!isIdentifier(text))
    problems.add(path + "." + key, "'" + text + "' is not an SQL identifier");
  return text;
}

std::optional<int64_t> asInteger(const Value& v) {
  if (const auto* i = std::get_if<int64_t>(&v)) return *i;
  if (const auto* d = std::get_if<double>(&v)) {
    if (std::isfinite(*d) && std::floor(*d) == *d && std::fabs(*d) < 9.0e15)
      return static_cast<int64_t>(*d);
  }
  return std::nullopt;
}

std::optional<double> asReal(const Value& v) {
  if (const auto* d = std::get_if<double>(&v)) return *d;
  if (const auto* i = std::get_if<int64_t>(&v)) return static_cast<double>(*i);
  return std::nullopt;
}

std::string centsToDecimal(int64_t cents) {
  const bool negative = cents < 0;
  const uint64_t magnitude =
      negative ? 0 - static_cast<uint64_t>(cents) : static_cast<uint64_t>(cents);
  std::string fraction = std::to_string(magnitude % 100);
  if (fraction.size() < 2) fraction.insert(0, "0");
  return (negative ? "-" : "") + std::to_string(magnitude / 100) + "." + fraction;
}

std::optional<int64_t> decimalToCents(const std::string& text) {
  size_t i = 0;
  bool negative = false;
  if (i < text.size() && (text[i] == '-' || text[i] == '+')) negative = text[i++] == '-';
  const size_t int_start = i;
  while (i < text.size() && std::isdigit(static_cast<unsigned char>(text[i])))
    ++i;
  const std::string whole = text.substr(int_start, i - int_start);
  std::string fraction;
  if (i < text.size() && text[i] == '.') {
    const size_t frac_start = ++i;
    while (i < text.size() && std::isdigit(static_cast<unsigned char>(text[i])))
      ++i;
    fraction = text.substr(frac_start, i - frac_start);
  }
  if (i != text.size() || whole.empty() || whole.size() > 15 || fraction.size() > 2) {
    return std::nullopt;
  }
  while (fraction.size() < 2)
    fraction += '0';
  const int64_t cents = std::stoll(whole) * 100 + std::stoll(fraction);
  return negative ? -cents : cents;
}

}  // namespace

common::Result<RowTranslator> RowTranslator::create(const json& document) {
  Problems problems;
  RowTranslator t;
  if (!document.is_object()) {
    return common::Result<RowTranslator>::failure("invalid_mapping",
                                                  "mapping: must be a JSON object");
  }
  checkKeys(document, "mapping", {"mapping", "description", "legacy", "service", "fields"},
            problems);
  if (auto it = document.find("mapping"); it != document.end() && it->is_string()) {
    t.name_ = it->get<std::string>();
  } else {
    problems.add("mapping.mapping", "is required: the mapping's name");
  }
  const auto legacy = document.value("legacy", json());
  const auto service = document.value("service", json());
  if (!legacy.is_object()) problems.add("mapping.legacy", "is required and must be an object");
  if (!service.is_object()) problems.add("mapping.service", "is required and must be an object");
  if (legacy.is_object()) {
    checkKeys(legacy, "mapping.legacy", {"table", "key", "constants"}, problems);
    t.legacy_table_ = identifierAt(legacy, "table", "mapping.legacy", problems);
    t.legacy_key_ = identifierAt(legacy, "key", "mapping.legacy", problems);
    if (auto it = legacy.find("constants"); it != legacy.end()) {
      if (!it->is_object()) problems.add("mapping.legacy.constants", "must be an object");
      for (const auto& [column, value] : it->items()) {
        auto parsed = valueFromJson(value);
        if (!isIdentifier(column)) {
          problems.add("mapping.legacy.constants." + column, "is not an SQL identifier");
        } else if (!parsed) {
          problems.add("mapping.legacy.constants." + column, "must be a number or a string");
        } else {
          t.legacy_constants_[column] = *parsed;
        }
      }
    }
  }
  if (service.is_object()) {
    checkKeys(service, "mapping.service", {"table", "key"}, problems);
    t.service_table_ = identifierAt(service, "table", "mapping.service", problems);
    t.service_key_ = identifierAt(service, "key", "mapping.service", problems);
  }
  const auto fields = document.value("fields", json());
  if (!fields.is_array() || fields.empty()) {
    problems.add("mapping.fields", "is required: a non-empty array");
  } else {
    std::set<std::string> legacy_seen;
    std::set<std::string> service_seen;
    for (size_t i = 0; i < fields.size(); ++i) {
      const std::string path = "mapping.fields[" + std::to_string(i) + "]";
      const auto& f = fields[i];
      if (!f.is_object()) {
        problems.add(path, "must be an object");
        continue;
      }
      checkKeys(f, path, {"legacy", "service", "kind", "nullable", "default", "values"}, problems);
      FieldMapping field;
      field.legacy = identifierAt(f, "legacy", path, problems);
      field.service = identifierAt(f, "service", path, problems);
      if (!field.legacy.empty() && !legacy_seen.insert(field.legacy).second)
        problems.add(path + ".legacy", "'" + field.legacy + "' is mapped twice");
      if (!field.service.empty() && !service_seen.insert(field.service).second)
        problems.add(path + ".service", "'" + field.service + "' is mapped twice");
      const auto kind = kindFromName(f.value("kind", std::string()));
      if (!kind) {
        problems.add(path + ".kind",
                     "must be one of integer, text, real, micro_degrees, cents, enum");
      } else {
        field.kind = *kind;
      }
      if (auto it = f.find("nullable"); it != f.end()) {
        if (!it->is_boolean())
          problems.add(path + ".nullable", "must be true or false");
        else
          field.nullable = it->get<bool>();
      }
      if (auto it = f.find("default"); it != f.end()) {
        field.default_legacy = valueFromJson(*it);
        if (!field.default_legacy) problems.add(path + ".default", "must be a number or a string");
      }
      if (field.kind == FieldKind::kEnum) {
        const auto values = f.value("values", json());
        if (!values.is_object() || values.empty()) {
          problems.add(path + ".values", "an enum needs a non-empty map of legacy code to name");
        } else {
          std::set<std::string> names;
          for (const auto& [code, name] : values.items()) {
            if (!name.is_string()) {
              problems.add(path + ".values." + code, "must be a string");
              continue;
            }
            if (!names.insert(name.get<std::string>()).second)
              problems.add(path + ".values." + code,
                           "name '" + name.get<std::string>() + "' is used twice (not reversible)");
            field.enum_values.emplace_back(enumKey(code), name.get<std::string>());
          }
        }
      } else if (f.contains("values")) {
        problems.add(path + ".values", "only an enum field has values");
      }
      t.fields_.push_back(std::move(field));
    }
    if (!t.legacy_key_.empty() && !legacy_seen.count(t.legacy_key_))
      problems.add("mapping.legacy.key", "'" + t.legacy_key_ + "' is not mapped by any field");
    if (!t.service_key_.empty() && !service_seen.count(t.service_key_))
      problems.add("mapping.service.key", "'" + t.service_key_ + "' is not mapped by any field");
  }
  if (!problems.empty()) {
    return common::Result<RowTranslator>::failure("invalid_mapping", problems.text());
  }
  return t;
}

common::Result<RowTranslator> RowTranslator::load(const std::string& name_or_file) {
  std::string text;
  if (auto builtin = builtinMapping(name_or_file)) {
    text = *builtin;
  } else {
    std::ifstream in(name_or_file);
    if (!in) {
      return common::Result<RowTranslator>::failure(
          "invalid_mapping",
          "'" + name_or_file + "' is neither a built-in mapping nor a readable file");
    }
    std::ostringstream buffer;
    buffer << in.rdbuf();
    text = buffer.str();
  }
  json document = json::parse(text, nullptr, false);
  if (document.is_discarded()) {
    return common::Result<RowTranslator>::failure("invalid_mapping",
                                                  name_or_file + ": not valid JSON");
  }
  return create(document);
}

const FieldMapping* RowTranslator::fieldByService(const std::string& service_column) const {
  for (const auto& f : fields_) {
    if (f.service == service_column) return &f;
  }
  return nullptr;
}

// One legacy value → the service value, in place; an error names `table.column`.
std::optional<TranslationError> RowTranslator::toServiceValue(const FieldMapping& f,
                                                              Value& v) const {
  const auto error = [&](const std::string& reason) {
    return TranslationError{legacy_table_ + "." + f.legacy, describe(v), reason};
  };
  if (std::holds_alternative<std::monostate>(v)) {
    if (f.default_legacy) {
      v = *f.default_legacy;
    } else if (f.nullable) {
      return std::nullopt;
    } else {
      return TranslationError{legacy_table_ + "." + f.legacy, "NULL",
                              "is required (the mapping allows no NULL here)"};
    }
  }
  switch (f.kind) {
    case FieldKind::kInteger: {
      const auto i = asInteger(v);
      if (!i) return error("is not an integer");
      v = *i;
      return std::nullopt;
    }
    case FieldKind::kText:
      if (!std::holds_alternative<std::string>(v)) return error("is not text");
      return std::nullopt;
    case FieldKind::kReal: {
      const auto d = asReal(v);
      if (!d) return error("is not a number");
      v = *d;
      return std::nullopt;
    }
    case FieldKind::kMicroDegrees: {
      const auto i = asInteger(v);
      if (!i || *i < -180000000 || *i > 180000000)
        return error("is not integer micro-degrees within -180e6..180e6");
      v = static_cast<double>(*i) / 1e6;
      return std::nullopt;
    }
    case FieldKind::kCents: {
      const auto i = asInteger(v);
      if (!i) return error("is not an integer amount of cents");
      v = centsToDecimal(*i);
      return std::nullopt;
    }
    case FieldKind::kEnum: {
      const auto as_int = asInteger(v);
      for (const auto& [code, label] : f.enum_values) {
        if (code == v || (as_int && std::holds_alternative<int64_t>(code) &&
                          std::get<int64_t>(code) == *as_int)) {
          v = label;
          return std::nullopt;
        }
      }
      std::string known;
      for (const auto& [code, label] : f.enum_values)
        known += (known.empty() ? "" : ", ") + describe(code);
      return error("is not one of " + known);
    }
  }
  return std::nullopt;
}

// One service value → the legacy value, in place.
std::optional<TranslationError> RowTranslator::toLegacyValue(const FieldMapping& f,
                                                             Value& v) const {
  const auto error = [&](const std::string& reason) {
    return TranslationError{service_table_ + "." + f.service, describe(v), reason};
  };
  if (std::holds_alternative<std::monostate>(v)) {
    if (f.nullable) return std::nullopt;
    return TranslationError{service_table_ + "." + f.service, "NULL",
                            "is required (the mapping allows no NULL here)"};
  }
  switch (f.kind) {
    case FieldKind::kInteger: {
      const auto i = asInteger(v);
      if (!i) return error("is not an integer");
      v = *i;
      return std::nullopt;
    }
    case FieldKind::kText:
      if (!std::holds_alternative<std::string>(v)) return error("is not text");
      return std::nullopt;
    case FieldKind::kReal: {
      const auto d = asReal(v);
      if (!d) return error("is not a number");
      v = *d;
      return std::nullopt;
    }
    case FieldKind::kMicroDegrees: {
      const auto d = asReal(v);
      if (!d || !std::isfinite(*d) || *d < -180.0 || *d > 180.0)
        return error("is not degrees within -180..180");
      // Rounded to the micro-degree: the legacy schema's resolution (about 11 cm).
      v = static_cast<int64_t>(std::llround(*d * 1e6));
      return std::nullopt;
    }
    case FieldKind::kCents: {
      const auto* text = std::get_if<std::string>(&v);
      const auto cents = text ? decimalToCents(*text) : std::nullopt;
      if (!cents) return error("is not a decimal amount like \"12.34\"");
      v = *cents;
      return std::nullopt;
    }
    case FieldKind::kEnum: {
      const auto* text = std::get_if<std::string>(&v);
      for (const auto& [legacy_code, label] : f.enum_values) {
        if (text && label == *text) {
          v = legacy_code;
          return std::nullopt;
        }
      }
      std::string known;
      for (const auto& [legacy_code, label] : f.enum_values)
        known += (known.empty() ? "" : ", ") + label;
      return error("is not one of " + known);
    }
  }
  return std::nullopt;
}

Translated<Row> RowTranslator::toService(const Row& legacy) const {
  Row out;
  for (const auto& f : fields_) {
    const auto it = legacy.find(f.legacy);
    Value v = it == legacy.end() ? Value() : it->second;
    if (auto error = toServiceValue(f, v)) return *error;
    out[f.service] = std::move(v);
  }
  return out;
}

Translated<Row> RowTranslator::toLegacy(const Row& service) const {
  Row out = legacy_constants_;
  for (const auto& f : fields_) {
    const auto it = service.find(f.service);
    Value v = it == service.end() ? Value() : it->second;
    if (auto error = toLegacyValue(f, v)) return *error;
    out[f.legacy] = std::move(v);
  }
  return out;
}

std::vector<std::optional<TranslationError>> RowTranslator::translateColumns(
    Columns& columns, bool to_service) const {
  const std::size_t rows = columns.empty() ? 0 : columns.front().size();
  std::vector<std::optional<TranslationError>> errors(rows);
  for (std::size_t c = 0; c < fields_.size() && c < columns.size(); ++c) {
    auto& column = columns[c];
    for (std::size_t r = 0; r < rows; ++r) {
      if (errors[r]) continue;  // the row already failed: report its first problem only
      errors[r] =
          to_service ? toServiceValue(fields_[c], column[r]) : toLegacyValue(fields_[c], column[r]);
    }
  }
  return errors;
}

}  // namespace strangler::acl
