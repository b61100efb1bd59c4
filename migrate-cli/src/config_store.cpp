#include "config_store.h"

#include <Poco/Net/HTTPClientSession.h>
#include <Poco/Net/HTTPRequest.h>
#include <Poco/Net/HTTPResponse.h>
#include <Poco/StreamCopier.h>
#include <Poco/URI.h>
#include <fcntl.h>
#include <pwd.h>
#include <sys/file.h>
#include <unistd.h>

#include <cstdlib>
#include <ctime>
#include <fstream>
#include <sstream>

#include "strangler/proxy/config.h"

namespace strangler::cli {
namespace {

using nlohmann::ordered_json;

common::Result<void> writeFully(int fd, const std::string& data, const std::string& what) {
  std::size_t done = 0;
  while (done < data.size()) {
    const ssize_t n = ::write(fd, data.data() + done, data.size() - done);
    if (n < 0) {
      if (errno == EINTR) continue;
      return common::Result<void>::failure("io",
                                           "cannot write " + what + ": " + std::strerror(errno));
    }
    done += static_cast<std::size_t>(n);
  }
  if (::fsync(fd) != 0) {
    return common::Result<void>::failure("io", "cannot sync " + what + ": " + std::strerror(errno));
  }
  return {};
}

std::string validationErrors(const ordered_json& document) {
  const auto violations = proxy::ProxyConfig::validate(nlohmann::json::parse(document.dump()));
  std::string text;
  for (const auto& v : violations)
    text += (text.empty() ? "" : "\n") + v;
  return text;
}

}  // namespace

ordered_json stageOf(const ordered_json& route) {
  ordered_json state{{"stage", route.value("stage", "monolith")}};
  if (route.contains("percent")) state["percent"] = route["percent"];
  return state;
}

std::string nowIso8601() {
  const std::time_t now = std::time(nullptr);
  std::tm tm{};
  gmtime_r(&now, &tm);
  char buffer[32];
  std::strftime(buffer, sizeof buffer, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buffer;
}

std::string whoAmI() {
  for (const char* var : {"STRANGLER_USER", "USER", "LOGNAME"}) {
    if (const char* v = std::getenv(var); v != nullptr && *v != '\0') return v;
  }
  if (const passwd* pw = getpwuid(getuid())) return pw->pw_name;
  return "unknown";
}

common::Result<ConfigStore> ConfigStore::open(const std::string& path) {
  ConfigStore store;
  store.path_ = path;
  const std::string lock_path = path + ".lock";
  store.lock_fd_ = ::open(lock_path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  if (store.lock_fd_ < 0) {
    return common::Result<ConfigStore>::failure(
        "io", "cannot open " + lock_path + ": " + std::strerror(errno));
  }
  // Concurrent strangler runs take turns: each reads the file only once it holds the lock.
  while (::flock(store.lock_fd_, LOCK_EX) != 0) {
    if (errno != EINTR) {
      return common::Result<ConfigStore>::failure("io", "cannot lock " + lock_path);
    }
  }
  std::ifstream in(path);
  if (!in) return common::Result<ConfigStore>::failure("io", "cannot read " + path);
  std::ostringstream text;
  text << in.rdbuf();
  store.json_ = ordered_json::parse(text.str(), nullptr, false);
  if (store.json_.is_discarded()) {
    return common::Result<ConfigStore>::failure("invalid", path + ": not valid JSON");
  }
  if (auto errors = validationErrors(store.json_); !errors.empty()) {
    return common::Result<ConfigStore>::failure("invalid",
                                                path + " is not a valid config:\n" + errors);
  }
  return store;
}

ConfigStore::ConfigStore(ConfigStore&& other) noexcept
    : path_(std::move(other.path_)), lock_fd_(other.lock_fd_), json_(std::move(other.json_)) {
  other.lock_fd_ = -1;
}

ConfigStore::~ConfigStore() {
  if (lock_fd_ >= 0) ::close(lock_fd_);  // releases the lock
}

ordered_json* ConfigStore::route(const std::string& name) {
  if (!json_.contains("routes") || !json_["routes"].is_array()) return nullptr;
  for (auto& r : json_["routes"]) {
    if (r.value("name", "") == name) return &r;
  }
  return nullptr;
}

common::Result<void> ConfigStore::commit(const JournalEntry& entry) {
  if (auto errors = validationErrors(json_); !errors.empty()) {
    return common::Result<void>::failure("refused",
                                         "the edit would make an invalid config:\n" + errors);
  }
  const std::string tmp = path_ + ".tmp." + std::to_string(getpid());
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) return common::Result<void>::failure("io", "cannot create " + tmp);
  auto written = writeFully(fd, json_.dump(2) + "\n", tmp);
  ::close(fd);
  if (!written.ok()) {
    ::unlink(tmp.c_str());
    return written;
  }
  if (::rename(tmp.c_str(), path_.c_str()) != 0) {
    ::unlink(tmp.c_str());
    return common::Result<void>::failure("io",
                                         "cannot replace " + path_ + ": " + std::strerror(errno));
  }
  const ordered_json line{{"time", entry.time}, {"route", entry.route}, {"action", entry.action},
                          {"from", entry.from}, {"to", entry.to},       {"who", entry.who}};
  const std::string journal_path = path_ + ".journal.jsonl";
  const int jfd = ::open(journal_path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  if (jfd < 0) return common::Result<void>::failure("io", "cannot open " + journal_path);
  auto journaled = writeFully(jfd, line.dump() + "\n", journal_path);
  ::close(jfd);
  return journaled;
}

std::vector<JournalEntry> ConfigStore::journal() const {
  std::vector<JournalEntry> entries;
  std::ifstream in(path_ + ".journal.jsonl");
  std::string line;
  while (std::getline(in, line)) {
    auto j = ordered_json::parse(line, nullptr, false);
    if (j.is_discarded() || !j.is_object()) continue;
    entries.push_back({j.value("time", ""), j.value("route", ""), j.value("action", ""),
                       j.value("from", ordered_json()), j.value("to", ordered_json()),
                       j.value("who", "")});
  }
  return entries;
}

namespace {

common::Result<std::string> adminCall(const std::string& admin_url, const std::string& method,
                                      const std::string& path, const std::string& token) {
  try {
    Poco::URI uri(admin_url);
    Poco::Net::HTTPClientSession session(uri.getHost(), uri.getPort());
    session.setTimeout(Poco::Timespan(5, 0));
    Poco::Net::HTTPRequest request(method, path, Poco::Net::HTTPMessage::HTTP_1_1);
    if (!token.empty()) request.set("Authorization", "Bearer " + token);
    request.setContentLength(0);
    session.sendRequest(request);
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

}  // namespace

common::Result<std::string> reloadProxy(const std::string& admin_url, const ordered_json& config) {
  std::string token;
  const std::string env = config.contains("admin") ? config["admin"].value("token_env", "") : "";
  if (!env.empty()) {
    if (const char* value = std::getenv(env.c_str())) token = value;
  }
  return adminCall(admin_url, "POST", "/reload", token);
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
