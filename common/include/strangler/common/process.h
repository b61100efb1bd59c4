#pragma once

#include <chrono>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <utility>
#include <vector>

namespace strangler::common {

/// A child process (the demo's services, the tests' real processes). Its stdout is captured
/// (drained by a thread so the child never blocks on a full pipe); stderr goes to the parent's
/// stderr. The destructor stops the child (SIGTERM, then SIGKILL) so nothing is left behind.
class ChildProcess {
 public:
  using Env = std::vector<std::pair<std::string, std::string>>;

  /// Starts `binary` with `args`; `env` entries are added to (or override) the parent's
  /// environment.
  static std::unique_ptr<ChildProcess> start(const std::string& binary,
                                             const std::vector<std::string>& args,
                                             const Env& env = {});
  ~ChildProcess();
  ChildProcess(const ChildProcess&) = delete;
  ChildProcess& operator=(const ChildProcess&) = delete;

  /// Waits until a stdout line contains `needle`; returns that line, or nullopt on timeout/exit.
  std::optional<std::string> waitForLine(const std::string& needle,
                                         std::chrono::milliseconds timeout);
  /// Everything the child printed on stdout so far.
  std::string output();
  /// Sends a signal to the child.
  void signal(int sig);
  /// Waits for the child to exit; returns its exit code (128+N when killed by signal N), or
  /// nullopt when it is still running after `timeout`.
  std::optional<int> wait(std::chrono::milliseconds timeout);
  /// SIGTERM, up to `grace` to exit, then SIGKILL. Returns the exit code.
  int stop(std::chrono::milliseconds grace = std::chrono::seconds(5));
  int pid() const { return pid_; }

 private:
  ChildProcess() = default;
  void drain(int fd);

  int pid_ = -1;
  std::optional<int> exit_code_;
  std::mutex mutex_;
  std::condition_variable changed_;
  std::string output_;
  bool eof_ = false;
  std::thread reader_;
};

/// Runs a command to completion (stdout captured) with a time limit; kills it on timeout.
struct CommandResult {
  int exit_code = -1;
  std::string output;
  bool timed_out = false;
};
CommandResult runCommand(const std::string& binary, const std::vector<std::string>& args,
                         std::chrono::milliseconds timeout = std::chrono::seconds(60),
                         const ChildProcess::Env& env = {});

}  // namespace strangler::common
