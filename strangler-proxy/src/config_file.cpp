#include "strangler/proxy/config_file.h"

#include <fcntl.h>
#include <pwd.h>
#include <sys/file.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <fstream>
#include <sstream>

#include "strangler/proxy/config.h"

namespace strangler::proxy {
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
  const auto violations = ProxyConfig::validate(nlohmann::json::parse(document.dump()));
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
  ordered_json line{{"time", entry.time}, {"route", entry.route}, {"action", entry.action},
                    {"from", entry.from}, {"to", entry.to},       {"who", entry.who}};
  if (entry.extra.is_object()) {
    for (const auto& [key, value] : entry.extra.items())
      line[key] = value;
  }
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
    JournalEntry entry{j.value("time", ""),           j.value("route", ""),
                       j.value("action", ""),         j.value("from", ordered_json()),
                       j.value("to", ordered_json()), j.value("who", ""),
                       ordered_json::object()};
    for (const auto& [key, value] : j.items()) {
      if (key != "time" && key != "route" && key != "action" && key != "from" && key != "to" &&
          key != "who")
        entry.extra[key] = value;
    }
    entries.push_back(std::move(entry));
  }
  return entries;
}

}  // namespace strangler::proxy
