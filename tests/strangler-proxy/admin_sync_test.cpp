// The admin API's dashboard page and its GET /sync relay of a `sync watch --status-listen`
// endpoint, and the `admin.sync_status_url` key that configures it.
#include <gtest/gtest.h>

#include <chrono>
#include <nlohmann/json.hpp>

#include "proxy_harness.h"
#include "strangler/proxy/config.h"

namespace strangler::proxy {
namespace {

using nlohmann::json;
using testing::FakeUpstream;
using testing::ProxyProcess;

json minimalConfig(const json& admin) {
  return json{{"admin", admin},
              {"upstreams", {{"monolith", {{"endpoints", {"127.0.0.1:8081"}}}}}},
              {"default_upstream", "monolith"}};
}

TEST(ProxyConfigSyncUrlTest, AcceptsHttpUrlsAndKeepsThemInJson) {
  for (const std::string url : {"http://127.0.0.1:9100/status", "http://sync.internal/status",
                                "http://[::1]:9100/status?mapping=drivers"}) {
    auto config =
        ProxyConfig::create(minimalConfig({{"listen", "127.0.0.1:0"}, {"sync_status_url", url}}));
    ASSERT_TRUE(config.ok()) << url << ": " << config.error().message;
    EXPECT_EQ(config->admin.sync_status_url, url);
    EXPECT_EQ(config->toJson()["admin"]["sync_status_url"], url);
  }
  auto without = ProxyConfig::create(minimalConfig({{"listen", "127.0.0.1:0"}}));
  ASSERT_TRUE(without.ok());
  EXPECT_TRUE(without->admin.sync_status_url.empty());
  EXPECT_FALSE(without->toJson()["admin"].contains("sync_status_url"));
}

TEST(ProxyConfigSyncUrlTest, RejectsWhatIsNotAPlainHttpUrl) {
  for (const json& url :
       {json("https://127.0.0.1:9100/status"), json("127.0.0.1:9100"), json("http://"),
        json("http://user:pw@127.0.0.1:9100/status"), json("http://127.0.0.1:0/status"),
        json("http://127.0.0.1:99999/status"), json("http://127.0.0.1:9100/a b"),
        json("http://127.0.0.1:9100/status#x"), json(""), json(9100)}) {
    const auto errors =
        ProxyConfig::validate(minimalConfig({{"listen", "127.0.0.1:0"}, {"sync_status_url", url}}));
    ASSERT_EQ(errors.size(), 1u) << url.dump();
    EXPECT_EQ(errors[0].rfind("admin.sync_status_url: ", 0), 0u) << errors[0];
  }
}

class AdminSyncTest : public ::testing::Test {
 protected:
  FakeUpstream monolith_{"monolith"};
  FakeUpstream sync_{"sync"};

  json configWithSync(const std::string& url) {
    json config = testing::baseConfig(monolith_);
    if (!url.empty()) config["admin"]["sync_status_url"] = url;
    return config;
  }
};

TEST_F(AdminSyncTest, SaysNotConfiguredWithoutAUrl) {
  ProxyProcess proxy(configWithSync(""));
  ASSERT_TRUE(proxy.running());
  const auto answer = proxy.admin("GET", "/sync");
  EXPECT_EQ(answer.status, 200);
  EXPECT_EQ(answer.json(), json({{"configured", false}}));
}

TEST_F(AdminSyncTest, RelaysTheSyncStatusDocument) {
  sync_.setResponder([](const testing::ReceivedRequest&) {
    return json{{"mapping", "drivers"}, {"state", "streaming"}, {"lag_ms", 42}};
  });
  const std::string url = "http://" + sync_.address() + "/status";
  ProxyProcess proxy(configWithSync(url));
  ASSERT_TRUE(proxy.running());
  const auto answer = proxy.admin("GET", "/sync");
  ASSERT_EQ(answer.status, 200) << answer.body;
  const auto doc = answer.json();
  EXPECT_EQ(doc["configured"], true);
  EXPECT_EQ(doc["reachable"], true) << doc.dump();
  EXPECT_EQ(doc["url"], url);
  EXPECT_EQ(doc["status"]["lag_ms"], 42);
  EXPECT_EQ(doc["status"]["state"], "streaming");
  ASSERT_EQ(sync_.count(), 1u);
  EXPECT_EQ(sync_.requests()[0].uri, "/status");
}

TEST_F(AdminSyncTest, ReportsAnUnreachableOrFailingSyncWithoutWaitingLong) {
  ProxyProcess proxy(configWithSync("http://" + sync_.address() + "/status"));
  ASSERT_TRUE(proxy.running());

  sync_.status = 500;
  auto doc = proxy.admin("GET", "/sync").json();
  EXPECT_EQ(doc["configured"], true);
  EXPECT_EQ(doc["reachable"], false);
  EXPECT_NE(doc.value("error", "").find("500"), std::string::npos) << doc.dump();

  // Slower than the relay's timeout: the dashboard still gets its answer promptly.
  sync_.status = 200;
  sync_.delay_ms = 3000;
  const auto started = std::chrono::steady_clock::now();
  doc = proxy.admin("GET", "/sync").json();
  EXPECT_LT(std::chrono::steady_clock::now() - started, std::chrono::milliseconds(2000));
  EXPECT_EQ(doc["reachable"], false) << doc.dump();
  EXPECT_FALSE(doc.value("error", "").empty());

  sync_.delay_ms = 0;
  sync_.stop();
  doc = proxy.admin("GET", "/sync").json();
  EXPECT_EQ(doc["reachable"], false) << doc.dump();
  EXPECT_FALSE(doc.value("error", "").empty());
}

TEST_F(AdminSyncTest, ServesTheSelfContainedDashboard) {
  ProxyProcess proxy(configWithSync(""));
  ASSERT_TRUE(proxy.running());
  const auto page = proxy.admin("GET", "/");
  EXPECT_EQ(page.status, 200);
  EXPECT_EQ(page.header("content-type").rfind("text/html", 0), 0u);
  EXPECT_NE(page.body.find("id=\"routes\""), std::string::npos);
  EXPECT_NE(page.body.find("data-panel=\"sync\""), std::string::npos);
  // Nothing is loaded from elsewhere: no absolute URLs at all.
  EXPECT_EQ(page.body.find("http://"), std::string::npos);
  EXPECT_EQ(page.body.find("https://"), std::string::npos);
  EXPECT_EQ(page.body.find("src=\"//"), std::string::npos);
}

}  // namespace
}  // namespace strangler::proxy
