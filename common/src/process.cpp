#include "strangler/common/process.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstring>
#include <map>
#include <stdexcept>

extern char** environ;

namespace strangler::common {
namespace {

std::vector<std::string> mergedEnvironment(const ChildProcess::Env& overrides) {
  std::map<std::string, std::string> vars;
  for (char** entry = environ; *entry != nullptr; ++entry) {
    std::string text(*entry);
    const auto eq = text.find('=');
    if (eq == std::string::npos) continue;
    vars[text.substr(0, eq)] = text.substr(eq + 1);
  }
  for (const auto& [key, value] : overrides)
    vars[key] = value;
  std::vector<std::string> result;
  result.reserve(vars.size());
  for (const auto& [key, value] : vars)
    result.push_back(key + "=" + value);
  return result;
}

}  // namespace

std::unique_ptr<ChildProcess> ChildProcess::start(const std::string& binary,
                                                  const std::vector<std::string>& args,
                                                  const Env& env) {
  int fds[2];
  if (pipe2(fds, O_CLOEXEC) != 0) throw std::runtime_error("pipe2 failed");

  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_adddup2(&actions, fds[1], STDOUT_FILENO);
  posix_spawn_file_actions_addopen(&actions, STDIN_FILENO, "/dev/null", O_RDONLY, 0);

  std::vector<std::string> argv_storage{binary};
  argv_storage.insert(argv_storage.end(), args.begin(), args.end());
  std::vector<char*> argv;
  for (auto& arg : argv_storage)
    argv.push_back(arg.data());
  argv.push_back(nullptr);
  auto env_storage = mergedEnvironment(env);
  std::vector<char*> envp;
  for (auto& entry : env_storage)
    envp.push_back(entry.data());
  envp.push_back(nullptr);

  pid_t pid = -1;
  const int rc = posix_spawn(&pid, binary.c_str(), &actions, nullptr, argv.data(), envp.data());
  posix_spawn_file_actions_destroy(&actions);
  close(fds[1]);
  if (rc != 0) {
    close(fds[0]);
    throw std::runtime_error("cannot start " + binary + ": " + std::strerror(rc));
  }
  std::unique_ptr<ChildProcess> child(new ChildProcess());
  child->pid_ = pid;
  child->reader_ = std::thread([raw = child.get(), fd = fds[0]] { raw->drain(fd); });
  return child;
}

void ChildProcess::drain(int fd) {
  char buffer[4096];
  for (;;) {
    const ssize_t n = read(fd, buffer, sizeof buffer);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    std::lock_guard lock(mutex_);
    output_.append(buffer, static_cast<size_t>(n));
    changed_.notify_all();
  }
  close(fd);
  std::lock_guard lock(mutex_);
  eof_ = true;
  changed_.notify_all();
}

ChildProcess::~ChildProcess() {
  if (!exit_code_) stop(std::chrono::seconds(3));
  if (reader_.joinable()) reader_.join();
}

std::optional<std::string> ChildProcess::waitForLine(const std::string& needle,
                                                     std::chrono::milliseconds timeout) {
  std::unique_lock lock(mutex_);
  std::optional<std::string> found;
  changed_.wait_for(lock, timeout, [&] {
    const auto at = output_.find(needle);
    if (at != std::string::npos) {
      const auto line_start = output_.rfind('\n', at);
      const auto begin = line_start == std::string::npos ? 0 : line_start + 1;
      const auto end = output_.find('\n', at);
      found = output_.substr(begin, end == std::string::npos ? std::string::npos : end - begin);
      return true;
    }
    return eof_;
  });
  return found;
}

std::string ChildProcess::output() {
  std::lock_guard lock(mutex_);
  return output_;
}

void ChildProcess::signal(int sig) {
  if (!exit_code_) ::kill(pid_, sig);
}

std::optional<int> ChildProcess::wait(std::chrono::milliseconds timeout) {
  if (exit_code_) return exit_code_;
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  for (;;) {
    int status = 0;
    const pid_t r = waitpid(pid_, &status, WNOHANG);
    if (r == pid_) {
      exit_code_ = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
      return exit_code_;
    }
    if (r < 0 && errno != EINTR) {
      exit_code_ = -1;
      return exit_code_;
    }
    if (std::chrono::steady_clock::now() >= deadline) return std::nullopt;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
}

int ChildProcess::stop(std::chrono::milliseconds grace) {
  if (exit_code_) return *exit_code_;
  ::kill(pid_, SIGTERM);
  if (auto code = wait(grace)) return *code;
  ::kill(pid_, SIGKILL);
  return wait(std::chrono::seconds(10)).value_or(-1);
}

CommandResult runCommand(const std::string& binary, const std::vector<std::string>& args,
                         std::chrono::milliseconds timeout, const ChildProcess::Env& env) {
  auto child = ChildProcess::start(binary, args, env);
  CommandResult result;
  auto code = child->wait(timeout);
  if (!code) {
    result.timed_out = true;
    code = child->stop(std::chrono::seconds(1));
  }
  result.exit_code = *code;
  // Let the reader collect what the child wrote before it exited: it returns at the pipe's end,
  // which comes at once unless a process the child started still holds the pipe. On a loaded
  // machine the reader may not run for a while, so this waits for the end, not a fixed moment.
  child->waitForLine("\x01never\x01", std::chrono::seconds(3));
  result.output = child->output();
  return result;
}

}  // namespace strangler::common
