// Abuse: the admin API. No mutating request succeeds without the right bearer token (401), or
// at all when no token is configured (403); the proxy refuses to start with its admin API on a
// non-loopback address and no token.
#include <gtest/gtest.h>

#include <fstream>

#include "fault_support.h"
#include "proxy_harness.h"

namespace strangler::fault {
namespace {

using nlohmann::json;
using proxy::testing::FakeUpstream;
using proxy::testing::ProxyProcess;

constexpr const char* kToken = "fault-admin-token";

const std::vector<std::string> kMutatingMethods = {"POST", "PUT", "DELETE", "PATCH"};
const std::vector<std::string> kPaths = {
    "/reload",  "/reload?force=1", "/reload/",       "//reload", "/RELOAD", "/routes",  "/healthz",
    "/metrics", "/diffs",          "/diffs?route=x", "/sync",    "/",       "/shutdown"};

// Authorization values that must not pass, with or without a configured token.
std::vector<std::map<std::string, std::string>> badCredentials() {
  const std::string token = kToken;
  std::vector<std::map<std::string, std::string>> headers = {{}};
  for (const std::string& value : std::vector<std::string>{
           "Bearer wrong-token", token, "Bearer", "Bearer ", "Bearer  " + token,
           "Bearer " + token + "x", "Bearer " + token.substr(0, token.size() - 1), "Basic " + token,
           "Token " + token, "Bearer " + std::string(4096, 'a')}) {
    headers.push_back({{"Authorization", value}});
  }
  headers.push_back({{"X-Admin-Token", token}});
  return headers;
}

class AdminAbuseTest : public ::testing::Test {
 protected:
  json config() const {
    json config = proxy::testing::baseConfig(monolith_);
    config["admin"]["token_env"] = "STRANGLER_FAULT_ADMIN_TOKEN";
    return config;
  }

  // Runs the proxy to completion with stdout and stderr captured.
  strangler::testing::CommandResult runProxy(const std::vector<std::string>& args,
                                             const strangler::testing::ChildProcess::Env& env) {
    std::vector<std::string> shell = {"-c", "exec \"$0\" \"$@\" 2>&1", STRANGLER_PROXY_BINARY};
    shell.insert(shell.end(), args.begin(), args.end());
    return strangler::testing::runCommand("/bin/sh", shell, std::chrono::seconds(10), env);
  }

  FakeUpstream monolith_{"monolith"};
};

TEST_F(AdminAbuseTest, MutatingRequestsWithoutTheTokenAreRefused) {
  ProxyProcess proxy(config(), {{"STRANGLER_FAULT_ADMIN_TOKEN", kToken}});
  ASSERT_TRUE(proxy.running());
  int sent = 0;
  int accepted = 0;
  int reload_not_401 = 0;
  for (const auto& method : kMutatingMethods) {
    for (const auto& path : kPaths) {
      for (const auto& headers : badCredentials()) {
        const auto answer = proxy.admin(method, path, headers);
        ++sent;
        if (answer.status >= 200 && answer.status < 300) {
          ++accepted;
          ADD_FAILURE() << method << " " << path << " accepted without the token";
        }
        const bool reload = path.rfind("/reload", 0) == 0 && path != "/reload/";
        if (reload && method == "POST" && answer.status != 401) {
          ++reload_not_401;
          ADD_FAILURE() << "POST " << path << ": " << answer.status << " instead of 401";
        }
      }
    }
  }
  // Nothing was reloaded; the right token does reload (the refusals were about the token).
  EXPECT_EQ(proxy.admin("GET", "/routes").json()["version"], 1);
  EXPECT_EQ(metricSum(proxy.admin("GET", "/metrics").body, "strangler_proxy_config_reloads_total"),
            0);
  const auto good =
      proxy.admin("POST", "/reload", {{"Authorization", std::string("Bearer ") + kToken}});
  EXPECT_EQ(good.status, 200) << good.body;
  EXPECT_EQ(proxy.admin("GET", "/routes").json()["version"], 2);
  reportFigure("admin.unauthorized_requests", sent, "-",
               "mutating admin requests without the right bearer token (4 methods x " +
                   std::to_string(kPaths.size()) + " paths x " +
                   std::to_string(badCredentials().size()) + " credentials)");
  reportFigure("admin.unauthorized_accepted", accepted, "0", "of those, answered 2xx");
  reportFigure("admin.reload_not_401", reload_not_401, "0",
               "POST /reload with a missing or wrong token answered otherwise than 401");
}

TEST_F(AdminAbuseTest, WithoutAConfiguredTokenMutationsAre403) {
  for (const auto& env :
       {strangler::testing::ChildProcess::Env{},
        strangler::testing::ChildProcess::Env{{"STRANGLER_FAULT_ADMIN_TOKEN", ""}}}) {
    ProxyProcess proxy(config(), env);
    ASSERT_TRUE(proxy.running());
    int not_403 = 0;
    auto credentials = badCredentials();
    credentials.push_back({{"Authorization", std::string("Bearer ") + kToken}});
    for (const auto& headers : credentials) {
      const auto answer = proxy.admin("POST", "/reload", headers);
      if (answer.status != 403) ++not_403;
      EXPECT_EQ(answer.status, 403) << answer.body;
    }
    EXPECT_EQ(proxy.admin("GET", "/routes").json()["version"], 1);
    EXPECT_EQ(proxy.admin("GET", "/healthz").status, 200);
    reportFigure(
        std::string("admin.no_token_reload_not_403") + (env.empty() ? "" : "_empty_env"), not_403,
        "0",
        std::string("POST /reload answered otherwise than 403 when the token variable is ") +
            (env.empty() ? "unset" : "empty"));
  }
}

TEST_F(AdminAbuseTest, RefusesToStartOnANonLoopbackAdminAddressWithoutAToken) {
  strangler::testing::TempDir dir;
  const std::string path = dir.file("strangler.json");
  int started = 0;
  struct Attempt {
    json config;
    std::vector<std::string> args;
    strangler::testing::ChildProcess::Env env;
  };
  json on_any = config();
  on_any["admin"]["listen"] = "0.0.0.0:0";
  const std::vector<Attempt> attempts = {
      {config(), {"--admin-listen", "0.0.0.0:0"}, {}},
      {on_any, {}, {}},
      {on_any, {}, {{"STRANGLER_FAULT_ADMIN_TOKEN", ""}}},
      {config(), {"--admin-listen", "127.0.0.1.example.com:0"}, {}},
  };
  for (const auto& attempt : attempts) {
    std::ofstream(path) << attempt.config.dump();
    std::vector<std::string> args = {"--config", path, "--workers", "1"};
    args.insert(args.end(), attempt.args.begin(), attempt.args.end());
    const auto result = runProxy(args, attempt.env);
    EXPECT_FALSE(result.timed_out) << "it started";
    EXPECT_EQ(result.exit_code, 1) << result.output;
    EXPECT_NE(result.output.find("refusing to serve the admin API"), std::string::npos)
        << result.output;
    EXPECT_EQ(result.output.find("listening on"), std::string::npos) << result.output;
    if (result.exit_code != 1) ++started;
  }
  // On another loopback address it starts without a token.
  std::ofstream(path) << config().dump();
  auto loopback = strangler::testing::ChildProcess::start(
      STRANGLER_PROXY_BINARY,
      {"--config", path, "--workers", "1", "--admin-listen", "127.0.0.2:0"});
  EXPECT_TRUE(loopback->waitForLine("listening on", std::chrono::seconds(10)))
      << loopback->output();
  EXPECT_EQ(loopback->stop(std::chrono::seconds(5)), 0);
  reportFigure("admin.insecure_start_allowed", started, "0",
               "starts with the admin API on a non-loopback address and no token (of " +
                   std::to_string(attempts.size()) + " attempts)");
}

}  // namespace
}  // namespace strangler::fault
