#include "config_store.h"

#include <Poco/Net/HTTPClientSession.h>
#include <Poco/Net/HTTPRequest.h>
#include <Poco/Net/HTTPResponse.h>
#include <Poco/StreamCopier.h>
#include <Poco/URI.h>

#include <chrono>
#include <iostream>
#include <random>
#include <sstream>
#include <thread>

#include "strangler/proxy/config.h"

namespace strangler::cli {

using nlohmann::ordered_json;

namespace {

common::Result<std::string> adminCall(const std::string& admin_url, const std::string& method,
                                      const std::string& path, const std::string& token,
                                      const std::string& body_text = "") {
  try {
    Poco::URI uri(admin_url);
    Poco::Net::HTTPClientSession session(uri.getHost(), uri.getPort());
    session.setTimeout(Poco::Timespan(5, 0));
    Poco::Net::HTTPRequest request(method, path, Poco::Net::HTTPMessage::HTTP_1_1);
    if (!token.empty()) request.set("Authorization", "Bearer " + token);
    request.setContentLength(static_cast<std::streamsize>(body_text.size()));
    if (!body_text.empty()) request.setContentType("application/json");
    session.sendRequest(request) << body_text;
    Poco::Net::HTTPResponse response;
    std::istream& in = session.receiveResponse(response);
    std::ostringstream body;
    Poco::StreamCopier::copyStream(in, body);
    if (response.getStatus() != Poco::Net::HTTPResponse::HTTP_OK) {
      return common::Result<std::string>::failure(
          "refused",
          "the proxy answered " + std::to_string(response.getStatus()) + ": " + body.str());
    }
    return body.str();
  } catch (const std::exception& e) {
    return common::Result<std::string>::failure(
        "unreachable", "cannot reach the proxy at " + admin_url + ": " + e.what());
  }
}

std::string adminToken(const ordered_json& config) {
  std::string token;
  const std::string env = config.contains("admin") ? config["admin"].value("token_env", "") : "";
  if (!env.empty()) {
    if (const char* value = std::getenv(env.c_str())) token = value;
  }
  return token;
}

}  // namespace

common::Result<nlohmann::json> callAdmin(const std::string& admin_url, const std::string& method,
                                         const std::string& path, const ordered_json& config,
                                         const std::string& body) {
  auto answer = adminCall(admin_url, method, path, adminToken(config), body);
  if (!answer.ok()) return answer.error();
  auto parsed = nlohmann::json::parse(*answer, nullptr, false);
  if (parsed.is_discarded()) {
    return common::Result<nlohmann::json>::failure(
        "invalid", "the proxy's answer to " + method + " " + path + " is not JSON");
  }
  return parsed;
}

common::Result<std::string> reloadProxy(const std::string& admin_url, const ordered_json& config) {
  return adminCall(admin_url, "POST", "/reload", adminToken(config));
}

common::Result<std::optional<std::string>> commitAndReload(ConfigStore& store,
                                                           const JournalEntry& entry,
                                                           const std::string& admin_url) {
  using R = common::Result<std::optional<std::string>>;
  auto committed = store.commit(entry);
  if (!committed.ok()) return R(committed.error());
  if (admin_url.empty()) return R(std::optional<std::string>());
  auto reloaded = reloadProxy(admin_url, store.json());
  if (!reloaded.ok()) {
    return R::failure("reload_failed", "config written, but " + reloaded.error().message);
  }
  return R(std::optional<std::string>(*reloaded));
}

int retryEdits(const std::function<int()>& attempt) {
  constexpr int kAttempts = 20;
  std::mt19937 random(std::random_device{}());
  for (int i = 0; i < kAttempts; ++i) {
    const int code = attempt();
    if (code != kRetryEdit) return code;
    std::cerr << "strangler: the config changed since it was read; editing again\n";
    // Spread the contenders out so they do not collide again in lock step.
    std::uniform_int_distribution<int> pause_ms(5, 20 + 10 * i);
    std::this_thread::sleep_for(std::chrono::milliseconds(pause_ms(random)));
  }
  std::cerr << "strangler: the config kept changing under this edit (" << kAttempts
            << " attempts); nothing was written\n";
  return 1;
}

common::Result<nlohmann::json> fetchAdmin(const std::string& admin_url, const std::string& path) {
  auto body = adminCall(admin_url, "GET", path, "");
  if (!body.ok()) return body.error();
  auto parsed = nlohmann::json::parse(*body, nullptr, false);
  if (parsed.is_discarded()) {
    return common::Result<nlohmann::json>::failure("invalid",
                                                   "the proxy's " + path + " is not JSON");
  }
  return parsed;
}

}  // namespace strangler::cli
