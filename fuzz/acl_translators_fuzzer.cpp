// libFuzzer: the ACL translators. Legacy rows through the built-in `drivers` mapping
// (toService → toLegacy → toService must give the same service row, and the column-wise bulk
// path must agree with the row-wise one), and driver-service answers through driversToLegacy.
#include <fuzzer/FuzzedDataProvider.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <string>

#include <nlohmann/json.hpp>

#include "strangler/acl/response_translators.h"
#include "strangler/acl/row_translator.h"

namespace {

using strangler::acl::Row;
using strangler::acl::RowTranslator;
using strangler::acl::Value;

[[noreturn]] void fail(const std::string& what) {
  std::fprintf(stderr, "%s\n", what.c_str());
  std::abort();
}

const RowTranslator& drivers() {
  static const RowTranslator kDrivers = [] {
    auto loaded = RowTranslator::load("drivers");
    if (!loaded) fail(loaded.error().message);
    return std::move(loaded).value();
  }();
  return kDrivers;
}

// Values the databases could hand over, biased towards the ones the mapping cares about.
Value fuzzedValue(FuzzedDataProvider& provider) {
  switch (provider.ConsumeIntegralInRange<int>(0, 6)) {
    case 0:
      return Value();
    case 1:
      return provider.ConsumeIntegral<int64_t>();
    case 2:
      return provider.ConsumeIntegralInRange<int64_t>(-200000000, 200000000);
    case 3:
      return provider.ConsumeIntegralInRange<int64_t>(-1, 3);
    case 4:
      return provider.ConsumeFloatingPoint<double>();
    case 5:
      return static_cast<double>(provider.ConsumeIntegralInRange<int>(-200, 200)) / 3.0;
    default:
      return provider.ConsumeRandomLengthString(24);
  }
}

std::string show(const Row& row) {
  std::string text;
  for (const auto& [column, value] : row)
    text += column + "=" + strangler::acl::describe(value) + " ";
  return text;
}

void rowRoundTrip(FuzzedDataProvider& provider) {
  const auto& t = drivers();
  Row legacy;
  for (const auto& field : t.fields()) {
    if (provider.ConsumeBool()) legacy[field.legacy] = fuzzedValue(provider);
  }
  const auto service = t.toService(legacy);

  // The bulk path translates the same values the same way.
  RowTranslator::Columns columns;
  for (const auto& field : t.fields()) {
    const auto it = legacy.find(field.legacy);
    columns.push_back({it == legacy.end() ? Value() : it->second});
  }
  const auto errors = t.translateColumns(columns, true);
  if (errors.size() != 1 || errors[0].has_value() == service.ok())
    fail("row-wise and column-wise translation disagree on " + show(legacy));
  if (!service) return;
  for (size_t i = 0; i < t.fields().size(); ++i) {
    if (!(columns[i][0] == service->at(t.fields()[i].service)))
      fail("column-wise value differs for " + t.fields()[i].service + " in " + show(legacy));
  }

  const auto back = t.toLegacy(*service);
  if (!back) fail("a translated row does not translate back: " + back.error().message());
  for (const auto& [column, value] : t.legacyConstants()) {
    if (!(back->at(column) == value)) fail("legacy constant " + column + " not set");
  }
  const auto again = t.toService(*back);
  if (!again) fail("the legacy row written back is refused: " + again.error().message());
  if (!(*again == *service))
    fail("legacy → service → legacy → service changed " + show(*service) + " to " + show(*again));
}

void responseTranslation(FuzzedDataProvider& provider) {
  const int status = provider.PickValueInArray(
      {200, 201, 204, 400, 404, 409, 422, 500, provider.ConsumeIntegral<int>()});
  const auto body = nlohmann::json::parse(provider.ConsumeRemainingBytesAsString(), nullptr, false);
  if (body.is_discarded()) return;
  const auto legacy = strangler::acl::driversToLegacy(status, body);
  if (!legacy) {
    if (legacy.error().message.empty()) fail("an untranslatable answer with no message");
    return;
  }
  (void)legacy->dump();  // a translated answer is valid JSON that serializes
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  FuzzedDataProvider provider(data, size);
  if (provider.ConsumeBool()) {
    rowRoundTrip(provider);
  } else {
    responseTranslation(provider);
  }
  return 0;
}
