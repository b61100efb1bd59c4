#include "strangler/proxy/config_file.h"

#include <fcntl.h>
#include <pwd.h>
#include <sys/file.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <fstream>
#include <random>
#include <sstream>

#include "strangler/common/etcd_client.h"
#include "strangler/proxy/config.h"

namespace strangler::proxy {
namespace {

/// 128 random bits in hex: an edit's id in the journal.
std::string operationId() {
  std::random_device device;
  char text[33];
  std::snprintf(text, sizeof text, "%08x%08x%08x%08x", device(), device(), device(), device());
  return text;
}

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

class ConfigStore::Backend {
 public:
  virtual ~Backend() = default;
  /// The stored document; nullopt when there is none.
  virtual common::Result<std::optional<std::string>> read() = 0;
  /// Replaces the document and appends the journal line, as one step where the store allows.
  virtual common::Result<void> write(const std::string& document, const ordered_json& line) = 0;
  /// Every journal line, oldest first.
  virtual std::vector<std::string> journalLines() const = 0;
  /// Makes write() also require `key` = `value` (etcd; a file has no such key).
  virtual void requireKey(std::string key, std::string value) {
    (void)key;
    (void)value;
  }
};

namespace {

class FileBackend : public ConfigStore::Backend {
 public:
  static common::Result<std::unique_ptr<ConfigStore::Backend>> open(const std::string& path) {
    using R = common::Result<std::unique_ptr<ConfigStore::Backend>>;
    std::unique_ptr<FileBackend> backend(new FileBackend());
    backend->path_ = path;
    const std::string lock_path = path + ".lock";
    backend->lock_fd_ = ::open(lock_path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (backend->lock_fd_ < 0)
      return R::failure("io", "cannot open " + lock_path + ": " + std::strerror(errno));
    // Concurrent strangler runs take turns: each reads the file only once it holds the lock.
    while (::flock(backend->lock_fd_, LOCK_EX) != 0) {
      if (errno != EINTR) return R::failure("io", "cannot lock " + lock_path);
    }
    return std::unique_ptr<ConfigStore::Backend>(std::move(backend));
  }
  ~FileBackend() override {
    if (lock_fd_ >= 0) ::close(lock_fd_);  // releases the lock
  }

  common::Result<std::optional<std::string>> read() override {
    std::ifstream in(path_);
    if (!in) {
      if (errno == ENOENT) return std::optional<std::string>();
      return common::Result<std::optional<std::string>>::failure("io", "cannot read " + path_);
    }
    std::ostringstream text;
    text << in.rdbuf();
    return std::optional<std::string>(text.str());
  }

  common::Result<void> write(const std::string& document, const ordered_json& line) override {
    const std::string tmp = path_ + ".tmp." + std::to_string(getpid());
    const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) return common::Result<void>::failure("io", "cannot create " + tmp);
    auto written = writeFully(fd, document, tmp);
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
    const std::string journal_path = path_ + ".journal.jsonl";
    const int jfd = ::open(journal_path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (jfd < 0) return common::Result<void>::failure("io", "cannot open " + journal_path);
    auto journaled = writeFully(jfd, line.dump() + "\n", journal_path);
    ::close(jfd);
    return journaled;
  }

  std::vector<std::string> journalLines() const override {
    std::vector<std::string> lines;
    std::ifstream in(path_ + ".journal.jsonl");
    std::string line;
    while (std::getline(in, line))
      lines.push_back(line);
    return lines;
  }

 private:
  FileBackend() = default;
  std::string path_;
  int lock_fd_ = -1;
};

// No lock: the transaction's compare on the config's mod_revision keeps concurrent writers
// from losing each other's edits, and journal sequence numbers from colliding.
class EtcdBackend : public ConfigStore::Backend {
 public:
  explicit EtcdBackend(common::EtcdLocation location)
      : location_(std::move(location)), client_(location_.endpoints) {}

  common::Result<std::optional<std::string>> read() override {
    using R = common::Result<std::optional<std::string>>;
    auto found = client_.get(location_.key("config"));
    if (!found.ok()) return found.error();
    auto last = client_.lastWithPrefix(location_.key("journal/"));
    if (!last.ok()) return last.error();
    next_sequence_ = 1;
    if (*last) {
      const std::string tail = (*last)->key.substr(location_.key("journal/").size());
      try {
        next_sequence_ = std::stoll(tail) + 1;
      } catch (const std::exception&) {
        return R::failure("invalid", "unexpected journal key " + (*last)->key);
      }
    }
    if (!found->first) {
      mod_revision_ = 0;
      return std::optional<std::string>();
    }
    mod_revision_ = found->first->mod_revision;
    return std::optional<std::string>(found->first->value);
  }

  common::Result<void> write(const std::string& document, const ordered_json& line) override {
    char sequence[32];
    std::snprintf(sequence, sizeof sequence, "%012lld", static_cast<long long>(next_sequence_));
    const std::string journal_key = location_.key(std::string("journal/") + sequence);
    // The journal line carries an id no other edit has: the transaction creates the line's key
    // (so it applies at most once) and an attempt whose answer was lost (a leader killed
    // mid-call) is settled by reading that key, instead of being reported as failed.
    ordered_json stamped = line;
    stamped["op"] = operationId();
    const common::EtcdTxnId id{journal_key, stamped.dump()};
    using Target = common::EtcdCompare::Target;
    std::vector<common::EtcdCompare> compares = {
        {Target::kModRevision, location_.key("config"), mod_revision_, ""}};
    for (const auto& [key, value] : required_)
      compares.push_back({Target::kValue, key, 0, value});
    auto done = client_.txn(
        compares, {{common::EtcdOp::Kind::kPut, location_.key("config"), document, 0}}, id);
    if (!done.ok()) return done.error();
    if (!*done) {
      return common::Result<void>::failure(
          "conflict", location_.key("config") + " changed since it was read (another edit won)" +
                          (required_.empty() ? "" : ", or this replica is no longer the decider"));
    }
    return {};
  }

  std::vector<std::string> journalLines() const override {
    std::vector<std::string> lines;
    common::EtcdClient client = client_;
    auto range = client.getPrefix(location_.key("journal/"));
    if (!range.ok()) return lines;
    for (const auto& kv : range->kvs)
      lines.push_back(kv.value);
    return lines;
  }

 private:
  void requireKey(std::string key, std::string value) override {
    required_.emplace_back(std::move(key), std::move(value));
  }

  common::EtcdLocation location_;
  common::EtcdClient client_;
  std::vector<std::pair<std::string, std::string>> required_;
  int64_t mod_revision_ = 0;
  int64_t next_sequence_ = 1;
};

}  // namespace

ConfigStore::ConfigStore() = default;
ConfigStore::ConfigStore(ConfigStore&& other) noexcept = default;
ConfigStore::~ConfigStore() = default;

common::Result<ConfigStore> ConfigStore::open(const std::string& location, Mode mode) {
  using R = common::Result<ConfigStore>;
  ConfigStore store;
  store.path_ = location;
  if (common::isEtcdUrl(location)) {
    auto etcd = common::parseEtcdUrl(location);
    if (!etcd.ok()) return etcd.error();
    store.backend_ = std::make_unique<EtcdBackend>(*etcd);
  } else {
    auto file = FileBackend::open(location);
    if (!file.ok()) return file.error();
    store.backend_ = std::move(file).value();
  }
  auto text = store.backend_->read();
  if (!text.ok()) return text.error();
  if (!*text) {
    if (mode == Mode::kReplace) return store;
    return R::failure(
        "io",
        "cannot read " + location + ": no config there" +
            (common::isEtcdUrl(location) ? " (store one with `strangler config push FILE`)" : ""));
  }
  store.json_ = ordered_json::parse(**text, nullptr, false);
  if (mode == Mode::kReplace) {
    if (store.json_.is_discarded()) store.json_ = nullptr;
    return store;
  }
  if (store.json_.is_discarded()) return R::failure("invalid", location + ": not valid JSON");
  if (auto errors = validationErrors(store.json_); !errors.empty())
    return R::failure("invalid", location + " is not a valid config:\n" + errors);
  return store;
}

ordered_json* ConfigStore::route(const std::string& name) {
  if (!json_.is_object() || !json_.contains("routes") || !json_["routes"].is_array())
    return nullptr;
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
  ordered_json line{{"time", entry.time}, {"route", entry.route}, {"action", entry.action},
                    {"from", entry.from}, {"to", entry.to},       {"who", entry.who}};
  if (entry.extra.is_object()) {
    for (const auto& [key, value] : entry.extra.items())
      line[key] = value;
  }
  return backend_->write(json_.dump(2) + "\n", line);
}

void ConfigStore::requireKey(std::string key, std::string value) {
  backend_->requireKey(std::move(key), std::move(value));
}

std::vector<JournalEntry> ConfigStore::journal() const {
  std::vector<JournalEntry> entries;
  for (const auto& line : backend_->journalLines()) {
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
