#include "strangler/acl/row_translator.h"

#include <gtest/gtest.h>

#include <random>

namespace strangler::acl {
namespace {

using nlohmann::json;

RowTranslator drivers() {
  auto t = RowTranslator::load("drivers");
  EXPECT_TRUE(t.ok()) << t.error().message;
  return t.value();
}

Row legacyDriver() {
  return Row{{"id", int64_t{1619}},
             {"user_type", int64_t{2}},
             {"full_name", std::string("Jung Do-yun")},
             {"phone", std::string("+82-10-6708-7179")},
             {"email", Value()},
             {"car_plate", std::string("94마 6462")},
             {"car_model", std::string("Hyundai Grandeur")},
             {"drv_status", int64_t{1}},
             {"lat_e6", int64_t{37568515}},
             {"lng_e6", int64_t{126975479}},
             {"loc_updated_at", int64_t{1767266280}},
             {"created_at", int64_t{1767262680}},
             {"updated_at", int64_t{1767266280}}};
}

TEST(RowTranslatorTest, TranslatesALegacyDriverRow) {
  auto service = drivers().toService(legacyDriver());
  ASSERT_TRUE(service.ok()) << service.error().message();
  EXPECT_EQ(std::get<std::string>(service->at("name")), "Jung Do-yun");
  EXPECT_EQ(std::get<std::string>(service->at("status")), "available");
  EXPECT_DOUBLE_EQ(std::get<double>(service->at("lat")), 37.568515);
  EXPECT_EQ(std::get<std::string>(service->at("vehicle_plate")), "94마 6462");
  EXPECT_FALSE(service->count("email"));      // not mapped: stays in the monolith
  EXPECT_FALSE(service->count("user_type"));  // a legacy constant, not service data
}

TEST(RowTranslatorTest, ReportsTextThatIsNotUtf8InsteadOfThrowing) {
  // Found by fuzz/acl_translators_fuzzer: the error message quoted the value as JSON and threw.
  Row row = legacyDriver();
  row["drv_status"] = std::string("\xff\xfe");
  const auto service = drivers().toService(row);
  ASSERT_FALSE(service.ok());
  EXPECT_EQ(service.error().field, "users.drv_status");
}

TEST(RowTranslatorTest, LegacyToServiceToLegacyIsIdentity) {
  const auto t = drivers();
  std::mt19937_64 rng(7);
  for (int i = 0; i < 2000; ++i) {
    Row row{{"id", static_cast<int64_t>(rng() % 1000000000)},
            {"user_type", int64_t{2}},
            {"full_name", "Driver " + std::to_string(rng() % 1000)},
            {"phone", "+82-10-" + std::to_string(rng() % 10000)},
            {"car_plate", std::to_string(rng() % 100) + "가 " + std::to_string(rng() % 10000)},
            {"car_model", std::string("Kia K5")},
            {"drv_status", static_cast<int64_t>(rng() % 3)},
            {"created_at", static_cast<int64_t>(rng() % 2000000000)},
            {"updated_at", static_cast<int64_t>(rng() % 2000000000)}};
    if (rng() % 4 == 0) {
      row["lat_e6"] = Value();
      row["lng_e6"] = Value();
      row["loc_updated_at"] = Value();
    } else {
      row["lat_e6"] = static_cast<int64_t>(rng() % 180000001) - 90000000;
      row["lng_e6"] = static_cast<int64_t>(rng() % 360000001) - 180000000;
      row["loc_updated_at"] = static_cast<int64_t>(rng() % 2000000000);
    }
    auto service = t.toService(row);
    ASSERT_TRUE(service.ok()) << service.error().message();
    auto back = t.toLegacy(*service);
    ASSERT_TRUE(back.ok()) << back.error().message();
    EXPECT_EQ(*back, row) << "row " << i;
  }
}

TEST(RowTranslatorTest, BadLegacyValuesAreTypedErrorsNamingFieldAndValue) {
  const auto t = drivers();
  auto row = legacyDriver();
  row["drv_status"] = int64_t{7};
  auto bad_enum = t.toService(row);
  ASSERT_FALSE(bad_enum.ok());
  EXPECT_EQ(bad_enum.error().field, "users.drv_status");
  EXPECT_EQ(bad_enum.error().value, "7");
  EXPECT_EQ(bad_enum.error().message(), "users.drv_status = 7: is not one of 0, 1, 2");

  row = legacyDriver();
  row["lat_e6"] = int64_t{200000000};
  EXPECT_EQ(t.toService(row).error().field, "users.lat_e6");
  row = legacyDriver();
  row["full_name"] = Value();
  EXPECT_EQ(t.toService(row).error().value, "NULL");
  row = legacyDriver();
  row["phone"] = int64_t{821012345678};
  EXPECT_EQ(t.toService(row).error().reason, "is not text");
  row = legacyDriver();
  row["created_at"] = std::string("yesterday");
  EXPECT_EQ(t.toService(row).error().value, "\"yesterday\"");
}

TEST(RowTranslatorTest, DeclaredDefaultsFillLegacyNullsOnly) {
  auto row = legacyDriver();
  row["car_plate"] = Value();
  row["drv_status"] = Value();
  auto service = drivers().toService(row);
  ASSERT_TRUE(service.ok());
  EXPECT_EQ(std::get<std::string>(service->at("vehicle_plate")), "");
  EXPECT_EQ(std::get<std::string>(service->at("status")), "offline");
}

TEST(RowTranslatorTest, BadServiceValuesAreTypedErrors) {
  const auto t = drivers();
  auto service = t.toService(legacyDriver()).value();
  service["status"] = std::string("napping");
  auto bad = t.toLegacy(service);
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.error().message(),
            "drivers.status = \"napping\": is not one of offline, available, on_trip");
  service = t.toService(legacyDriver()).value();
  service["lng"] = 181.5;
  EXPECT_EQ(t.toLegacy(service).error().field, "drivers.lng");
}

TEST(RowTranslatorTest, ConvertsCentsBothWays) {
  auto t = RowTranslator::create(json::parse(R"({
    "mapping": "invoices",
    "legacy": {"table": "invoices", "key": "id"},
    "service": {"table": "bills", "key": "bill_id"},
    "fields": [
      {"legacy": "id", "service": "bill_id", "kind": "integer"},
      {"legacy": "amount_cents", "service": "amount", "kind": "cents"}
    ]})"));
  ASSERT_TRUE(t.ok()) << t.error().message;
  for (int64_t cents : {0, 5, 570, 123456789, -250}) {
    auto service = t->toService({{"id", int64_t{1}}, {"amount_cents", cents}});
    ASSERT_TRUE(service.ok());
    auto back = t->toLegacy(*service);
    ASSERT_TRUE(back.ok()) << back.error().message();
    EXPECT_EQ(std::get<int64_t>(back->at("amount_cents")), cents);
  }
  EXPECT_EQ(std::get<std::string>(
                t->toService({{"id", int64_t{1}}, {"amount_cents", int64_t{570}}})->at("amount")),
            "5.70");
  EXPECT_FALSE(t->toLegacy({{"bill_id", int64_t{1}}, {"amount", std::string("5.705")}}).ok());
  EXPECT_FALSE(t->toLegacy({{"bill_id", int64_t{1}}, {"amount", std::string("five")}}).ok());
}

TEST(RowTranslatorTest, InvalidMappingReportsEveryProblemWithItsPath) {
  auto t = RowTranslator::create(json::parse(R"({
    "mapping": "broken",
    "legacy": {"table": "users; DROP TABLE users", "key": "id"},
    "service": {"table": "drivers", "key": "driver_id"},
    "colour": "blue",
    "fields": [
      {"legacy": "id", "service": "id", "kind": "integer"},
      {"legacy": "status", "service": "status", "kind": "enum", "values": {"1": "on", "2": "on"}},
      {"legacy": "x", "service": "y", "kind": "complex"}
    ]})"));
  ASSERT_FALSE(t.ok());
  const auto& message = t.error().message;
  EXPECT_NE(message.find("mapping.colour: unknown key"), std::string::npos) << message;
  EXPECT_NE(message.find("mapping.legacy.table"), std::string::npos) << message;
  EXPECT_NE(message.find("mapping.fields[1].values.2"), std::string::npos) << message;
  EXPECT_NE(message.find("mapping.fields[2].kind"), std::string::npos) << message;
  EXPECT_NE(message.find("mapping.service.key: 'driver_id' is not mapped"), std::string::npos)
      << message;
}

TEST(RowTranslatorTest, UnknownMappingNameIsAClearError) {
  auto t = RowTranslator::load("no-such-mapping");
  ASSERT_FALSE(t.ok());
  EXPECT_NE(t.error().message.find("no-such-mapping"), std::string::npos);
}

}  // namespace
}  // namespace strangler::acl
