// `strangler demo --fast` end to end: real processes, traffic, every stage, verify.
#include <gtest/gtest.h>

#include <regex>

#include "strangler/testing/http_client.h"
#include "strangler/testing/process.h"
#include "strangler/testing/temp_dir.h"

namespace strangler::cli {
namespace {

TEST(DemoTest, FastDemoMigratesAndRollsBackWithoutAClientError) {
  strangler::testing::TempDir dir;
  const auto result = strangler::testing::runCommand(
      STRANGLER_CLI_BIN, {"demo", "--fast", "--workdir", dir.file("demo")},
      std::chrono::seconds(180));
  EXPECT_FALSE(result.timed_out);
  EXPECT_EQ(result.exit_code, 0) << result.output;
  EXPECT_NE(result.output.find("failed requests: 0"), std::string::npos) << result.output;
  EXPECT_NE(result.output.find("sync verify: identical"), std::string::npos) << result.output;
  // Every data step was checked: the cutovers needed no force, and both sides agreed after each.
  EXPECT_NE(result.output.find("sync verify after the extraction: identical"), std::string::npos);
  EXPECT_NE(result.output.find("sync verify after the rollback: identical"), std::string::npos);
  EXPECT_NE(result.output.find("sync verify at the end: identical"), std::string::npos);
  EXPECT_EQ(result.output.find("DIFFERENT"), std::string::npos);
  // Traffic really moved: the extracted stage served from driver-service.
  std::smatch m;
  ASSERT_TRUE(std::regex_search(
      result.output, m,
      std::regex(
          R"(\[service owns the drivers' writes\] drivers route: \+(\d+) requests \(\+(\d+) to driver-service)")))
      << result.output;
  // All but the requests already in flight when the stage changed.
  EXPECT_GT(std::stoi(m[2].str()), 0);
  EXPECT_GE(std::stoi(m[2].str()) * 100, std::stoi(m[1].str()) * 95) << result.output;
  // Every process it started is gone: the proxy's port no longer answers.
  ASSERT_TRUE(
      std::regex_search(result.output, m, std::regex(R"(strangler-proxy on 127\.0\.0\.1:(\d+))")));
  EXPECT_THROW(
      strangler::testing::httpRequest("127.0.0.1", static_cast<uint16_t>(std::stoi(m[1].str())),
                                      "GET", "/api/drivers/1", "", {}, std::chrono::seconds(2)),
      std::exception);
}

}  // namespace
}  // namespace strangler::cli
